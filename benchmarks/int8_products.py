"""The screening pass's products alone: float32 against oneDNN's int8 (u8 x s8, int32 sums), both sides of a matching.

Random unit rows, 1,024-row blocks as the pass, best of `--rounds` after a warm-up: float32 (`ScreenedCosines.screen`),
int8 products only (`int8_screen._product` per column tile), and int8 with each row's scale applied
(`Int8Cosines.screen`, what the pass reads). Source of the table in benchmarks/README.md "An int8 screen".

    python benchmarks/int8_products.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from saeseeds.matching import int8_screen  # noqa: E402
from saeseeds.matching.cosine_sources import ScreenedCosines  # noqa: E402
from saeseeds.matching.similarity import unit_rows  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["16384x768", "6048x576"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    for shape in args.shapes:
        n, d = (int(x) for x in shape.split("x"))
        sides = [tuple(unit_rows(rng.standard_normal((n, d), dtype=np.float32), torch.device("cpu")) for _ in range(2))
                 for _ in range(2)]  # encoder and decoder
        fp32 = [ScreenedCosines(a, b, precision="fp32") for a, b in sides]
        int8 = [int8_screen.Int8Cosines(a, b) for a, b in sides]
        blocks = [np.arange(r, min(r + 1024, n)) for r in range(0, n, 1024)]

        def screens(sources):
            for source in sources:
                for rows in blocks:
                    source.screen(rows)

        def products():
            for s in int8:
                for rows in blocks:
                    for (c0, c1), packed in zip(s.tiles, s.packed):
                        int8_screen._product(s.qa[rows[0] : rows[-1] + 1], packed, s.col_scale[c0:c1])

        modes = {"float32": lambda: screens(fp32), "int8 products": products, "int8 with row scales": lambda: screens(int8)}
        best = {name: float("inf") for name in modes}
        for name, run in modes.items():
            run()  # warm-up
        for _ in range(args.rounds):
            for name, run in modes.items():
                t0 = time.perf_counter()
                run()
                best[name] = min(best[name], time.perf_counter() - t0)
        print(f"{n} x {d}, both sides: " + ", ".join(f"{name} {s:.2f} s" for name, s in best.items()), flush=True)


if __name__ == "__main__":
    main()
