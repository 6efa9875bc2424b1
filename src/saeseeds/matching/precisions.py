"""The screening precisions of the sparse matching, in a module that imports nothing, so the CLI can list them without torch."""

PRECISIONS = ("auto", "bf16", "fp32")
"""How the screening pass multiplies: bfloat16 inputs with float32 accumulation, float32, or the faster on this device."""
