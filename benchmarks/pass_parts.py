"""The screening pass's reductions part by part: what the kept rows and the column tops each add to the plain reductions.

`similarity.candidate_pass` multiplies each block of rows (float32 on CPU) and reduces it in one compiled pass
(`screen_kernels.reduce_block`): each row's top 48 and the column maxima always; where neighbours compete, also
each row's largest values kept for the certificate's second looks (`keep_screen`) and each column's 16 best rows
(`col_depth`). This runs one side's pass four ways, round after round in one process (the machine's drift hits all
four alike), and prints the product's and the reductions' seconds of each, after one unrecorded round:

    python benchmarks/pass_parts.py --kind correlated --rounds 2                 # synthetic 16,384 x 768
    python benchmarks/pass_parts.py --real results/smollm2-135m/kjv-pydoc/layers.6.mlp/*/ --rounds 2
    python benchmarks/pass_parts.py --kind correlated --block-rows 1024 256 128  # plain + kept + tops, per block size
    python benchmarks/pass_parts.py --real <sets> --screen int8                   # the int8 screen's pass
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from matching import real_pair, synthetic_pair

PARTS = {"plain": (False, 0), "kept rows": (True, 0), "column tops": (False, 16), "both": (True, 16)}


def one_pass(source, keep: bool, col_depth: int, block_rows: int) -> dict:
    """Returns the seconds of one side's pass (product, reductions, first touches of the kept rows' memory)."""
    from saeseeds.matching.similarity import candidate_pass

    timings: dict[str, float] = {}
    start = time.perf_counter()
    cand = candidate_pass(source, depth=48, block_rows=block_rows, timings=timings, keep_screen=keep, col_depth=col_depth)
    wall = time.perf_counter() - start
    if cand.stored is not None:
        cand.stored.release()
    return {"wall_s": wall, "product_s": timings["similarity"], "reduce_s": timings["reduce"], "touch_s": timings.get("touch", 0.0)}


def main() -> None:
    import torch

    from saeseeds.matching.screen_choice import screen_source
    from saeseeds.matching.similarity import unit_rows

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", nargs="*", help="set folders whose seed0/seed1 checkpoints are stacked (as matching.py)")
    parser.add_argument("--kind", default="correlated", choices=["random", "correlated"])
    parser.add_argument("--n", type=int, default=16384)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--side", default="enc", choices=["enc", "dec"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--screen", default="fp32", choices=["fp32", "int8"], help="the pass's product (CPU)")
    parser.add_argument("--block-rows", type=int, nargs="+", default=[1024], help="several: each with kept rows and tops")
    args = parser.parse_args()
    enc_a, dec_a, enc_b, dec_b = real_pair(args.real) if args.real else synthetic_pair(args.n, args.d, 0, kind=args.kind)
    a, b = (enc_a, enc_b) if args.side == "enc" else (dec_a, dec_b)
    cpu = torch.device("cpu")
    source = screen_source(unit_rows(a, cpu), unit_rows(b, cpu), args.screen, 48)  # the matching's own choice of source
    runs = [(name, keep, depth, args.block_rows[0]) for name, (keep, depth) in PARTS.items()]
    if len(args.block_rows) > 1:
        runs = [(f"both, {rows}-row blocks", True, 16, rows) for rows in args.block_rows]
    kind = "real" if args.real else args.kind
    for r in range(args.rounds + 1):
        for name, keep, depth, rows in runs:
            source._buffer = None  # each run's product writes a buffer of its own block size
            result = one_pass(source, keep, depth, rows)
            if r:
                print(json.dumps({"kind": kind, "n": source.n, "side": args.side, "run": name, "round": r,
                                  **{k: round(v, 3) for k, v in result.items()}}), flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
