"""The encoder's and decoder's solves side by side against one after the other, in one process, alternated.

`match.match_dictionaries` runs both screening passes (every core each), then both solves in two threads where the
job has two cores (`match._finish_side_by_side`). The passes are the same work either way, so this times what comes
after them: the whole call's wall minus the passes' seconds, plus the stored screens' first touches (both screens
are held at once side by side, so the second one's pages are fresh: that cost belongs to the change). Alternating
the two modes run by run in one process keeps a noisy machine's drift out of the comparison, which separate
`matching.py --worker` runs (each beside its own floor) could not do this hour. Each repeat also times the float32
floor (`matching.fp32_floor`) right before its two calls, so each call's wall over the floor of its own minute is
reported too (`wall_over_floor`).

Since stop 48 a CPU matching runs each side in its own thread from its pass to its solve
(`match._match_sides_on_their_own_cores`), so "side by side" here is that layout, its passes overlap, and the seconds
"after the passes" (wall minus the summed pass seconds) no longer mean what they say: compare the walls
(`wall_s`, `wall_over_floor`) instead.

    python benchmarks/solves_side_by_side.py --real results/smollm2-135m/kjv-pydoc/layers.6.mlp/*/ --repeat 4
    python benchmarks/solves_side_by_side.py --kind correlated --n 16384 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from matching import fp32_floor, real_pair, synthetic_pair


def after_passes(pair, side_by_side: bool) -> tuple[float, dict]:
    """Returns (seconds after the passes, plus first touches; the call's wall, touches and objectives) of one matching call."""
    import saeseeds.matching.match as match

    original = match._solves_side_by_side
    match._solves_side_by_side = original if side_by_side else (lambda: False)
    try:
        timings = {}
        start = time.perf_counter()
        _, meta = match.match_dictionaries(*pair, method="sparse", device="cpu", timings=timings)
        wall = time.perf_counter() - start
    finally:
        match._solves_side_by_side = original
    assert meta["certified"]
    objectives = [meta["certificate"][side]["objective_quantised"] for side in ("enc", "dec")]
    touch = timings.get("touch", 0.0)
    return wall - timings["pass"] + touch, {"objectives": objectives, "touch_s": touch, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", nargs="*", help="set folders whose seed0/seed1 checkpoints are stacked (as matching.py)")
    parser.add_argument("--kind", default="random", choices=["random", "correlated"])
    parser.add_argument("--n", type=int, default=16384)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    enc_a, dec_a, enc_b, dec_b = real_pair(args.real) if args.real else synthetic_pair(args.n, args.d, 0, kind=args.kind)
    pair = (enc_a, dec_a, enc_b, dec_b)
    runs = {"in_turn": [], "side_by_side": []}
    touches = {"in_turn": [], "side_by_side": []}
    ratios = {"in_turn": [], "side_by_side": []}
    floors = []
    objectives = set()
    after_passes(pair, True)  # compiles and warms what both modes use
    for _ in range(args.repeat):
        floors.append(fp32_floor((enc_a, enc_b), (dec_a, dec_b)))
        for mode in runs:
            seconds, info = after_passes(pair, mode == "side_by_side")
            runs[mode].append(seconds)
            touches[mode].append(info["touch_s"])
            ratios[mode].append(info["wall_s"] / floors[-1])
            objectives.add(tuple(info["objectives"]))
    assert len(objectives) == 1, "the two modes must reach the same optimum"
    result = {
        "kind": "real" if args.real else args.kind,
        "n": len(enc_a),
        "d": enc_a.shape[1],
        "after_passes_s": runs,
        "touch_s": touches,
        "floor_s": floors,
        "wall_over_floor": ratios,
        "median_wall_over_floor": {mode: float(np.median(v)) for mode, v in ratios.items()},
        "best": {mode: min(v) for mode, v in runs.items()},
        "median": {mode: float(np.median(v)) for mode, v in runs.items()},
        "objectives": list(objectives.pop()),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
