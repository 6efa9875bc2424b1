"""Autointerp: top-activating examples, explanations and detection scores from a chat model."""
