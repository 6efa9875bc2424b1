"""fig2_only_in_base (placeholder until figures land)."""
