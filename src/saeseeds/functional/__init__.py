"""Functional correspondence: loss recovered with an SAE spliced in, and the substitution tests."""
