"""The sparse matching's screening settings, in a module that imports nothing, so the CLI and the planner read them without torch."""

PRECISIONS = ("auto", "bf16", "fp32", "int8")
"""How the screening pass multiplies: bfloat16 inputs with float32 accumulation, float32, int8 with int32 sums (CPU), or
the fastest on this device ("auto": int8 on a CPU whose int8 products check out where it pays, else bf16 where native,
else float32; `screen_choice`)."""

KEEP_MAX_LATENTS = 131072
"""Up to this many latents the pass keeps each row's largest screened values (`stored_screen`: 96 MiB at 16K,
770 MiB at the limit); above it, rows screened again are multiplied again. At 131K x 131K correlated dictionaries
(d = 768, AVX2 EPYC) the rescreens took 3.7 s with the kept rows against 216.8 s multiplied, the whole matching
616.6 s against 750.3 s (`benchmarks/results_matching_131k_correlated_stop36.json`)."""

DEEP_CAPACITY = 1024
"""Values kept per row of a stored screen at most (6 bytes each, `stored_screen`); a row of n <= this keeps all.

Deeper rows were tried on the default study's stacked SAEs (6,048 latents, 2,774 a row): fewer rows fell short,
but collecting and scanning the longer rows cost more (rescreens 0.17-0.23 s against 0.11-0.16 s)."""


def deep_capacity(n: int) -> int:
    """Returns how many values each row of a stored screen may keep (`screen_kernels.reduce_block` keeps fewer)."""
    return min(n, DEEP_CAPACITY)


def stored_screen_bytes(n: int) -> int:
    """Returns the memory a matching of n latents spends on its stored screen (0 when it keeps none)."""
    return n * (6 * deep_capacity(n) + 8) if n <= KEEP_MAX_LATENTS else 0
