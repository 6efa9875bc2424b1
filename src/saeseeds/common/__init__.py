"""Shared plumbing: atomic writes, rule logs, live progress lines."""
