"""The sparse matching's screening settings, in a module that imports nothing, so the CLI and the planner read them without torch."""

PRECISIONS = ("auto", "bf16", "fp32")
"""How the screening pass multiplies: bfloat16 inputs with float32 accumulation, float32, or the faster on this device."""

KEEP_MAX_LATENTS = 32768
"""Up to this many latents the pass keeps its screen at 2 bytes per pair (`stored_screen`: 512 MiB at 16K, 2 GiB at
the limit); above it, rows screened again are multiplied again."""


def stored_screen_bytes(n: int) -> int:
    """Returns the memory a matching of n latents spends on its stored screen (0 when it keeps none)."""
    return 2 * n * n if n <= KEEP_MAX_LATENTS else 0
