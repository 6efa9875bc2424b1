"""Stage 1, caching: the model and corpus, the forward pass that records hook activations, the store."""
