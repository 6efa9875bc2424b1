"""Training on the fly against training on the cache: what computing the activations in the job costs.

Both runs train the same SAE (recipe, seed, data order) at the site of a cached store: once reading the store,
once with `activations.mode: on_the_fly` (saeseeds.activations.onthefly: the model loaded in the job, its forward passes run
in the batch reader's thread). Each run is a fresh subprocess, so its time and peak RSS are its own. Printed: wall
time, training tokens per second, peak RSS, whether the checkpoints are byte-identical, and the planner's
expected extra time on the fly (`estimates.on_the_fly_seconds`, the figure `saeseeds plan` uses) against the
measured one.

    python benchmarks/onthefly.py --store results/smollm2-135m/kjv-pydoc/layers.6.mlp/activations.zarr
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _site(attrs: dict) -> dict:
    """Returns the config entries (model, dataset, activations) that describe the store's site."""
    return {
        "model": {"source": attrs["model"], "revision": attrs["revision"], "dtype": attrs.get("model_dtype", "float32")},
        "dataset": {"source": attrs["dataset"], "split": attrs.get("split", "train"), "text_field": attrs.get("text_field", "text")},
        "activations": attrs["config"],
    }


def _one_run(args: argparse.Namespace) -> None:
    import torch

    from saeseeds.activations.onthefly import open_on_the_fly
    from saeseeds.sae.coder import SaeConfig
    from saeseeds.activations.store import open_store
    from saeseeds.sae.train import TrainConfig, train_sae

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    cached = open_store(args.store)
    store = args.store if args.run == "cache" else open_on_the_fly("site", hook=cached.attrs["hook"], **_site(cached.attrs))
    metrics = train_sae(
        store, Path(args.out), SaeConfig(num_latents=args.latents, k=args.k),
        TrainConfig(batch_size=args.batch_size, max_tokens=args.tokens, lr=args.lr, warmup_steps=args.warmup, state_every_steps=0),
        seed=0, data_seed=7,
    )
    wall = time.perf_counter() - start
    print(json.dumps({"wall_s": wall, "tokens": metrics["tokens_seen"], "fvu": metrics["fvu"], "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="a cached store of a language-model site")
    parser.add_argument("--latents", type=int, default=1152)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--tokens", type=int, default=None, help="training tokens (default: one pass over the store's training rows)")
    parser.add_argument("--lr", type=float, default=0.002)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--run", choices=("cache", "fly"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        return _one_run(args)

    from saeseeds.plan import estimates
    from saeseeds.activations.store import open_store

    store = open_store(args.store)
    args.tokens = args.tokens or store.n_train
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in ("cache", "fly"):
            cmd = [sys.executable, __file__, "--store", args.store, "--run", run, "--out", f"{tmp}/{run}", "--latents", str(args.latents),
                   "--k", str(args.k), "--batch-size", str(args.batch_size), "--tokens", str(args.tokens), "--lr", str(args.lr),
                   "--warmup", str(args.warmup), "--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"{run} run failed:\n{proc.stderr[-3000:]}")
            results[run] = json.loads(proc.stdout.strip().splitlines()[-1])
        same = (Path(tmp) / "cache" / "sae.safetensors").read_bytes() == (Path(tmp) / "fly" / "sae.safetensors").read_bytes()
    site = _site(store.attrs)
    config = {"models": {"m": site["model"]}, "saes": {"s": {"max_tokens": args.tokens}}}
    expected = estimates.on_the_fly_seconds(config, "m", store.attrs["hook"], "s", {**site["activations"], "device": "cpu"})
    print(f"{store.attrs['model']} {store.attrs['hook']}: {args.latents} latents, k={args.k}, {args.tokens:,} training tokens "
          f"({args.tokens / store.n_train:.2f} passes over {store.n_train:,} cached), {store.n_heldout:,} held out, {args.threads} threads\n")
    print("| run | wall s | training tok/s | peak RSS MB | held-out FVU |")
    print("|---|---|---|---|---|")
    for run, label in (("cache", "cached store"), ("fly", "on the fly")):
        r = results[run]
        print(f"| {label} | {r['wall_s']:.1f} | {r['tokens'] / r['wall_s']:,.0f} | {r['peak_mb']:.0f} | {r['fvu']:.4f} |")
    extra = results["fly"]["wall_s"] - results["cache"]["wall_s"]
    print(f"\non the fly / cached wall time: {results['fly']['wall_s'] / results['cache']['wall_s']:.2f}x; "
          f"checkpoints byte-identical: {'yes' if same else 'NO'}")
    print(f"extra time on the fly: measured {extra:.1f} s, planner's expectation {expected:.1f} s (ratio {expected / extra:.2f})")


if __name__ == "__main__":
    main()
