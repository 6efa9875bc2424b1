"""Side-by-side SAE training speed, memory and quality: saeseeds against eai-sparsify and sae-lens.

Every trainer trains a TopK SAE of the same shape (default d from the store, 4608 latents, k=32,
batch 4096 tokens, fp32) on the same cached activations, reading identical batches in identical
order (saeseeds' BatchPlan/BatchReader feeds all of them), for the same number of tokens; then the
held-out FVU of each is computed with the same formula. Each run is a fresh subprocess, so its peak
RSS is its own. Every Adam run has the same schedule (linear warmup, then linear decay to 0 at the last step)
and the same gradient clipping (norm 1.0, which sae-lens hard-codes; `--grad-clip`); the script prints each
run's learning rate at its first, middle and last step and its training-FVU curve (`--curves` plots them), so
a reader can check both.

The peers are imported only in their own subprocesses, with `--peer-python` (a separate environment
holding eai-sparsify and sae-lens; never the project's). sparsify's Trainer hooks a language model, so
its per-batch logic (trainer.py's hook: b_dec = first batch mean, decoder renorm, forward with its
fused encoder, backward, parallel-gradient removal, optimiser and schedule) is replayed on cached
activations. sae-lens runs its own SAETrainer with a data provider.

    python benchmarks/training.py --store results/.../activations.zarr --peer-python /tmp/benchvenv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = ("saeseeds-adam", "saeseeds-signum", "saeseeds-adam-x9", "saeseeds-adam-fp32", "saeseeds-signum-fp32", "sparsify-signum",
        "sparsify-adam", "saelens-adam")
"""saeseeds runs screen the encoder's top-k in bf16 where it is native (`encoder_screen` "auto"); "-fp32" runs never do."""
SRC = Path(__file__).resolve().parents[1] / "src"


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _plan_and_reader(store_path: str, tokens: int, batch_size: int, data_seed: int):
    from saeseeds.sae.batches import BatchPlan, BatchReader
    from saeseeds.activations.store import open_store

    store = open_store(store_path)
    plan = BatchPlan(store.n_train, store.array.chunks[0], batch_size, tokens // batch_size, data_seed=data_seed, window_rows=65536)
    return store, plan, BatchReader(store, plan)


def _heldout_fvu(store, reconstruct) -> float:
    import torch

    x = torch.from_numpy(store.heldout())
    err = total = 0.0
    mean = x.double().mean(0)
    with torch.no_grad():
        for s in range(0, len(x), 4096):
            xb = x[s : s + 4096]
            err += float((xb.double() - reconstruct(xb).double()).pow(2).sum())
            total += float((xb.double() - mean).pow(2).sum())
    return err / total


def _trace(curve: list[float], lrs: list[float]) -> dict:
    """The training-FVU curve (per step) and the learning rate at the first, middle and last step; `flat` is how
    much the mean training FVU fell from the second-last to the last tenth of the run (~0 once the curve has flattened)."""
    tenth = max(1, len(curve) // 10)
    last, before = curve[-tenth:], curve[-2 * tenth : -tenth] or curve[-tenth:]
    return {"curve": curve, "lr_first_mid_last": [lrs[0], lrs[len(lrs) // 2], lrs[-1]],
            "train_fvu_last_tenth": sum(last) / len(last), "fvu_drop_last_tenth": sum(before) / len(before) - sum(last) / len(last)}


def child(run: str, args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    n, k, bs, tokens = args.latents, args.k, args.batch_size, args.tokens
    steps = tokens // bs
    lr_adam = 2e-4 / (n / 2**14) ** 0.5
    # Memory is counted from here, after each library's imports and before any data or model
    if run.startswith("saeseeds"):
        import saeseeds.sae.train  # noqa: F401
    elif run.startswith("sparsify"):
        import sparsify  # noqa: F401
    else:
        import sae_lens.training.sae_trainer  # noqa: F401
    import saeseeds.sae.batches  # noqa: F401
    base_rss = _rss_mb()
    if run.startswith("saeseeds"):
        from saeseeds.sae.coder import SaeConfig
        from saeseeds.sae.train import TrainConfig, train_saes

        seeds = list(range(9)) if run.endswith("x9") else [0]
        optimizer = "signum" if "signum" in run else "adam"
        # b_dec from the first batch's mean, as the sparsify replay below starts it (the README's figures used it)
        from saeseeds.sae.train import default_lr, lr_factor

        cfg = TrainConfig(batch_size=bs, max_tokens=tokens, optimizer=optimizer, warmup_steps=args.warmup, state_every_steps=0,
                          b_dec_init="mean", grad_clip=args.grad_clip, encoder_screen="fp32" if run.endswith("fp32") else "auto")
        with tempfile.TemporaryDirectory() as tmp:
            metrics = train_saes(args.store, [Path(tmp) / f"seed{s}" for s in seeds], SaeConfig(num_latents=n, k=k), cfg, seeds=seeds, data_seed=args.data_seed)
            import pandas as pd

            curve = pd.read_parquet(Path(tmp) / "seed0" / "loss_curve.parquet")["fvu"].tolist()
        wall = metrics[0]["wall_time_s"]
        fvus = [m["fvu"] for m in metrics]
        lrs = [default_lr(n, optimizer) * (lr_factor(s, args.warmup, steps) if optimizer == "adam" else 1.0) for s in range(steps)]
        return {"run": run, "seeds": len(seeds), "train_s": wall, "fvu": sum(fvus) / len(fvus), "fvu_min": min(fvus), "fvu_max": max(fvus),
                "peak_rss_mb": _peak_mb(), "base_rss_mb": base_rss, "reader_wait_s": metrics[0]["reader_wait_s"], **_trace(curve, lrs)}

    store, plan, reader = _plan_and_reader(args.store, tokens, bs, args.data_seed)
    d = store.d_in
    if run.startswith("sparsify"):
        from sparsify import SparseCoder, SparseCoderConfig
        from transformers import get_linear_schedule_with_warmup

        torch.manual_seed(0)
        sae = SparseCoder(d, SparseCoderConfig(num_latents=n, k=k), "cpu", dtype=torch.float32)
        schedulers = []
        if run.endswith("signum"):
            from schedulefree import ScheduleFreeWrapper
            from sparsify.sign_sgd import SignSGD

            opt = ScheduleFreeWrapper(SignSGD([{"params": sae.parameters(), "lr": 5e-3 / (n / 2**14) ** 0.5}]), momentum=0.95)
            opt.train()
        else:
            opt = torch.optim.Adam(sae.parameters(), lr=lr_adam)
            schedulers.append(get_linear_schedule_with_warmup(opt, args.warmup, steps))
        curve, lrs = [], []
        t0 = time.perf_counter()
        with reader:
            for step, x in enumerate(reader):
                if step == 0:
                    sae.b_dec.data = x.mean(0)
                sae.set_decoder_norm_to_unit_norm()
                out = sae(x=x, y=x, dead_mask=None)
                out.fvu.backward()
                sae.remove_gradient_parallel_to_decoder_directions()
                if args.grad_clip is not None and not run.endswith("signum"):  # sparsify itself does not clip
                    torch.nn.utils.clip_grad_norm_(sae.parameters(), args.grad_clip)
                curve.append(float(out.fvu))
                lrs.append(opt.param_groups[0]["lr"])
                opt.step()
                opt.zero_grad()
                for sched in schedulers:
                    sched.step()
        wall = time.perf_counter() - t0
        if run.endswith("signum"):
            opt.eval()
        fvu = _heldout_fvu(store, lambda xb: sae(xb).sae_out)
        return {"run": run, "seeds": 1, "train_s": wall, "fvu": fvu, "peak_rss_mb": _peak_mb(), "base_rss_mb": base_rss, **_trace(curve, lrs)}

    if run.startswith("saelens"):
        from sae_lens.config import SAETrainerConfig
        from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
        from sae_lens.training.sae_trainer import SAETrainer

        if args.grad_clip != 1.0:
            raise SystemExit("sae-lens clips gradients at norm 1.0 (hard-coded in SAETrainer): run it with --grad-clip 1.0")
        torch.manual_seed(0)
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d, d_sae=n, k=k, dtype="float32", device="cpu"))
        cfg = SAETrainerConfig(total_training_samples=steps * bs, train_batch_size_samples=bs, lr=lr_adam, lr_warm_up_steps=args.warmup, lr_decay_steps=steps - args.warmup, lr_end=lr_adam, device="cpu")
        with reader:
            batches = iter(reader)
            first = next(batches)

            def provider():
                yield first
                yield from batches

            trainer = SAETrainer(cfg, sae, provider())
            curve, lrs = [], []
            train_step = trainer._train_step

            def traced_step(sae, sae_in):  # its FVU per batch, as the other trainers report theirs (no extra work in the loop's timing to speak of)
                lrs.append(trainer.optimizer.param_groups[0]["lr"])
                out = train_step(sae, sae_in)
                with torch.no_grad():
                    x = sae_in.float()
                    curve.append(float((out.sae_out - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()))
                return out

            trainer._train_step = traced_step
            t0 = time.perf_counter()
            trainer.fit()
            wall = time.perf_counter() - t0
        sae.eval()
        fvu = _heldout_fvu(store, lambda xb: sae.decode(sae.encode(xb)))
        return {"run": run, "seeds": 1, "train_s": wall, "fvu": fvu, "peak_rss_mb": _peak_mb(), "base_rss_mb": base_rss, **_trace(curve, lrs)}
    raise SystemExit(f"unknown run {run!r}; known: {RUNS}")


def parent(args) -> list[dict]:
    """Runs every trainer `--repeat` times, interleaved (A B C, A B C, ...) so that load from other
    processes hits all of them alike; keeps each run's fastest repeat (its FVU is the same every time)."""
    runs = args.runs.split(",")
    best: dict[str, dict] = {}
    for rep in range(args.repeat):
        for run in runs:
            python = sys.executable if run.startswith("saeseeds") else args.peer_python
            if python is None:
                print(f"skipping {run}: no --peer-python", file=sys.stderr)
                continue
            cmd = [python, __file__, "--child", run] + sys.argv[1:]
            # PASSIVE: idle OpenMP threads sleep instead of spinning; on a CPU shared with other work the
            # spinning threads otherwise steal the cores (measured 4x slower steps at 2 threads here)
            env = {**os.environ, "PYTHONPATH": str(SRC), "SPARSIFY_DISABLE_TRITON": "1", "TQDM_DISABLE": "1", "OMP_WAIT_POLICY": args.omp_wait_policy}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            if proc.returncode != 0 or not lines:
                print(f"{run} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
                continue
            res = json.loads(lines[-1])
            res["tok_s_per_seed"] = res["seeds"] * (args.tokens // args.batch_size * args.batch_size) / res["train_s"]
            res["mem_mb_per_seed"] = (res["peak_rss_mb"] - res["base_rss_mb"]) / res["seeds"]
            print(f"repeat {rep}: " + json.dumps({k: v for k, v in res.items() if k != "curve"}), file=sys.stderr)
            prev = best.get(run)
            res["train_s_all"] = (prev["train_s_all"] if prev else []) + [round(res["train_s"], 2)]
            if prev is None or res["train_s"] < prev["train_s"]:
                best[run] = res
            else:
                prev["train_s_all"] = res["train_s_all"]
    return [best[r] for r in runs if r in best]


def table(results: list[dict], reference: str) -> str:
    ref = next((r for r in results if r["run"] == reference), None)
    head = ("| run | seeds | train s (best of repeats) | tok/s per seed | vs " + reference + " | peak RSS MB | memory MB per seed (peak - RSS after imports) "
            "| held-out FVU | train FVU, last tenth | its drop from the tenth before | lr first / middle / last |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for r in results:
        ratio = f"{r['tok_s_per_seed'] / ref['tok_s_per_seed']:.2f}x" if ref else "-"
        fvu = f"{r['fvu']:.4f}" + (f" ({r['fvu_min']:.4f}-{r['fvu_max']:.4f})" if r.get("fvu_min") is not None and r["seeds"] > 1 else "")
        lr = " / ".join(f"{v:.2e}" for v in r["lr_first_mid_last"])
        rows.append(f"| {r['run']} | {r['seeds']} | {r['train_s']:.1f} | {r['tok_s_per_seed']:.0f} | {ratio} | {r['peak_rss_mb']:.0f} | {r['mem_mb_per_seed']:.0f} | {fvu} "
                    f"| {r['train_fvu_last_tenth']:.4f} | {r['fvu_drop_last_tenth']:.4f} | {lr} |")
    return head + "\n".join(rows) + "\n"


def plot_curves(results: list[dict], path: str) -> None:
    """Training FVU per step of every run (a 10-step moving average, log-scaled steps), as PNG and HTML
    (the project's figure writer)."""
    import altair as alt
    import numpy as np
    import pandas as pd

    from saeseeds.figures.style import save_chart

    rows = []
    for r in results:
        y = np.convolve(r["curve"], np.ones(10) / 10, mode="valid")
        rows += [{"run": r["run"], "step": i + 10, "train FVU (10-step mean)": float(v)} for i, v in enumerate(y)]
    chart = alt.Chart(pd.DataFrame(rows)).mark_line().encode(
        x=alt.X("step:Q", scale=alt.Scale(type="log")),
        y=alt.Y("train FVU (10-step mean):Q", scale=alt.Scale(domain=[0, 1])),
        color="run:N",
    ).properties(width=520, height=300)
    save_chart(chart, Path(path).with_suffix(".html"), path, ppi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True, help="activations.zarr to train on")
    ap.add_argument("--tokens", type=int, default=196608, help="training tokens per run (default 48 batches of 4096)")
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--latents", type=int, default=4608)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=5, help="adam warmup steps (same schedule for every adam run)")
    ap.add_argument("--grad-clip", type=float, default=1.0, help="gradient-norm clipping of every Adam run (sae-lens: fixed at 1.0)")
    ap.add_argument("--curves", default=None, help="plot every run's training-FVU curve to this PNG")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--omp-wait-policy", default="PASSIVE", choices=["PASSIVE", "ACTIVE"], help="OMP_WAIT_POLICY for every run")
    ap.add_argument("--runs", default=",".join(RUNS))
    ap.add_argument("--repeat", type=int, default=2, help="repeats of every run; the fastest is kept")
    ap.add_argument("--peer-python", default=None, help="python of an environment with eai-sparsify and sae-lens")
    ap.add_argument("--reference", default="sparsify-signum")
    ap.add_argument("--json", default=None, help="write all results here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    results = parent(args)
    print(table(results, args.reference))
    if any("reader_wait_s" in r for r in results):
        print("saeseeds reader wait (s waiting for batches): " + ", ".join(f"{r['run']} {r['reader_wait_s']:.2f}" for r in results if "reader_wait_s" in r))
    if args.curves:
        plot_curves(results, args.curves)
        print(f"training-FVU curves: {args.curves}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
