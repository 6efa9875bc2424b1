"""Stage 3, matching: similarities, the exact certified assignment, matches files, checkpoint readers and writers."""
