"""Stage 2, training: the sparse coders, several seeds stacked in one model, batches and the training loop."""
