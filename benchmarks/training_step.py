"""One TopK training step on CPU with and without each compiled kernel, interleaved in one process.

On a shared VM a whole-run benchmark moves by 30% between hours; here every variant runs the same
steps of the same model, round after round, so the medians compare within minutes. Variants:

- `new`: the float32 top-k by `sae.fp32_topk` and the sparse backward's A^T @ dense by `sae.sparse_kernels`
- `old`: torch's `add_` + `topk` and MKL's sparse `addmm` (what the step did before both)
- `csr only`, `topk only`: one of the two

    python benchmarks/training_step.py --store <layers.6.mlp activations.zarr> --threads 1 --rounds 5
    python benchmarks/training_step.py --store <layers.6.mlp activations.zarr> --profile old     # where a step's time goes
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--optimizer", default="signum", choices=["signum", "adam"])
    ap.add_argument("--latents", type=int, default=4608)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=6, help="steps per variant per round")
    ap.add_argument("--profile", choices=["new", "old", "csr only", "topk only"], default=None,
                    help="instead: torch.profiler's table of 5 steps of this variant (ops by self CPU time)")
    args = ap.parse_args()

    import saeseeds.sae.stacked as stacked
    from saeseeds.activations.store import open_store
    from saeseeds.sae.coder import SaeConfig
    from saeseeds.sae.train import TrainConfig, TrainingRun, default_lr

    torch.set_num_threads(args.threads)
    store = open_store(args.store)
    total = 3 + args.rounds * 4 * args.steps
    cfg = TrainConfig(batch_size=4096, max_tokens=4096 * total, optimizer=args.optimizer, b_dec_init="mean", state_every_steps=0,
                      encoder_screen="fp32")
    run = TrainingRun(store, SaeConfig(num_latents=args.latents, k=args.k), cfg, [0], 0, total, default_lr(args.latents, args.optimizer), torch.device("cpu"))
    batches = torch.from_numpy(store.heldout()[: 4096 * 4].copy()).view(4, 4096, -1)
    kernels, usable = stacked.sparse_kernels.supported, stacked.usable
    variants = {
        "new": (kernels, usable),
        "old": (lambda *a: False, lambda n, k: False),
        "csr only": (kernels, lambda n, k: False),
        "topk only": (lambda *a: False, usable),
    }
    step = 0
    for _ in range(3):  # warm-up: numba's compiled kernels load, buffers are allocated
        run.step(step, batches[step % 4])
        step += 1
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        stacked.sparse_kernels.supported, stacked.usable = variants[args.profile]
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                run.step(step, batches[step % 4])
                step += 1
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
        return
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (supported, topk_usable) in variants.items():
            stacked.sparse_kernels.supported, stacked.usable = supported, topk_usable
            t0 = time.perf_counter()
            for _ in range(args.steps):
                run.step(step, batches[step % 4])
                step += 1
            times[name].append((time.perf_counter() - t0) / args.steps * 1e3)
    stacked.sparse_kernels.supported, stacked.usable = kernels, usable
    print(f"{args.threads} thread(s), {args.optimizer}, {args.latents} latents, k = {args.k}: ms per step, median of {args.rounds} rounds of {args.steps} steps")
    base = statistics.median(times["old"])
    for name, values in times.items():
        med = statistics.median(values)
        print(f"  {name:10s} {med:7.1f}  ({base / med:.2f}x old)  rounds: {', '.join(f'{v:.0f}' for v in values)}")


if __name__ == "__main__":
    main()
