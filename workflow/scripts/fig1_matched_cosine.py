"""fig1_matched_cosine (placeholder until figures land)."""
