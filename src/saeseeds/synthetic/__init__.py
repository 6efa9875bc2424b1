"""Activations with a known dictionary, and how much of it each seed recovers."""
