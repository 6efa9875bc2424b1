"""Two seeds of a large TopK SAE on a cached store, for the matching benchmark only (`matching.py --real`).

The default study's dictionaries have at most 1,152 latents; issue 21 asks for the matching benchmark on real
dictionaries of 16K latents or more. This trains seeds 0 and 1 stacked in one job with saeseeds' trainer (the paper's
Adam recipe: lr 2e-4 / sqrt(n / 2^14), linear warmup then decay, gradient clipping at 1) for a number of passes over
the store's training rows, and writes OUT/seed0 and OUT/seed1 as a workflow job would.

    python benchmarks/train_large.py --store results/smollm2-135m/kjv-pydoc/layers.6.mlp/activations.zarr \\
        --out /tmp/real16k/topk-16384-k32-10pass --latents 16384 --k 32 --passes 10
    python benchmarks/matching.py --real /tmp/real16k/topk-16384-k32-10pass/
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--latents", type=int, default=16384)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--passes", type=float, default=10)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--warmup", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from saeseeds.activations.store import open_store
    from saeseeds.sae.configs import SaeConfig, TrainConfig
    from saeseeds.sae.train import train_saes

    torch.set_num_threads(args.threads)
    steps = round(args.passes * open_store(args.store).n_train / args.batch_size)
    start = time.perf_counter()
    train_saes(args.store, [f"{args.out}/seed0", f"{args.out}/seed1"], SaeConfig(num_latents=args.latents, k=args.k),
               TrainConfig(batch_size=args.batch_size, max_tokens=steps * args.batch_size, warmup_steps=args.warmup,
                           state_every_steps=0), seeds=[0, 1], data_seed=0)
    print(f"{steps} steps of {args.batch_size} tokens, seeds 0 and 1 stacked: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
