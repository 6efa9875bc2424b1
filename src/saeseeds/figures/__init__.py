"""Stage 5, figures: the paper's Figures 1-6 and the figures beyond it, one module per family."""
