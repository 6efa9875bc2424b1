"""fig3_firing (placeholder until figures land)."""
