"""Convergence of seed agreement at laptop scale: shared fraction and bimodality of matched cosines against
tokens seen, on a cached store (the default study's main site: SmolLM2-135M embedded, kjv-pydoc,
layers.6.mlp).

`train` trains the seeds of one recipe stacked in one job with saeseeds' own trainer step (the `TrainingRun` of
saeseeds.sae.train, fed by BatchPlan/BatchReader exactly as `train_saes` feeds it), and at log-spaced
checkpoints (in passes over the store's training rows) matches the seeds with saeseeds' exact matching
(saeseeds.matching.match) and appends one JSON line per checkpoint to OUT/LABEL/checkpoints.jsonl: tokens seen,
shared fraction (paper definition, threshold 0.7), Sarle's coefficient and the Gaussian-mixture statistics
(saeseeds.stats.bimodality) of encoder and decoder matched cosines, held-out FVU and L0 per seed. The matches of
each checkpoint are kept (OUT/LABEL/matches-stepN.parquet) for histograms. A checkpoint's learning rate is
wherever the run's schedule is at that step (adam: linear warmup, then linear decay to zero at the run's
last step); a run's last checkpoint has decayed to zero.

`table` prints every run's checkpoints as a markdown table; `figures` draws agreement against tokens seen
and the matched-cosine histograms at each run's last checkpoint (altair, PNG through vl-convert).

    python benchmarks/convergence.py train --store results/smollm2-135m/kjv-pydoc/layers.6.mlp/activations.zarr \\
        --out benchmarks/out/convergence --label adam-1152-k8-48p --latents 1152 --k 8 --passes 48 \\
        --checkpoints 0.25,0.5,1,2,3,6,12,24,48
    python benchmarks/convergence.py table --out benchmarks/out/convergence
    python benchmarks/convergence.py figures --out benchmarks/out/convergence --docs docs

Steps per second are printed as measured on whatever machine ran it (shared, loaded cores here): use them
to size runs, not as timings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


def _coders(run):
    """Returns each seed's SparseCoder at this step (schedule-free: the averaged weights x), leaving training untouched."""
    import torch

    from saeseeds.sae.train import ScheduleFreeSignum

    if not isinstance(run.opt, ScheduleFreeSignum):
        return run.model.to_coders()
    x = run.opt.eval_params()
    with torch.no_grad():
        saved = {p: p.detach().clone() for p in x}
        for p, value in x.items():
            p.copy_(value)
        coders = run.model.to_coders()
        for p, value in saved.items():
            p.copy_(value)
    return coders


def checkpoint_row(coders, heldout: np.ndarray, threshold: float) -> tuple[dict, pd.DataFrame]:
    """Returns (row, matches of seed 0 vs seed 1): agreement, bimodality and held-out health of the coders."""
    from saeseeds.stats.bimodality import bimodality_stats
    from saeseeds.matching.match import match_dictionaries
    from saeseeds.sae.train import evaluate

    dicts = [(c.encoder.weight.detach().numpy().copy(), c.W_dec.detach().numpy().copy()) for c in coders]
    table, meta = match_dictionaries(*dicts[0], *dicts[1], threshold=threshold, definition="paper", device="cpu")
    evs = [evaluate(c, heldout) for c in coders]
    row = {
        "shared_paper": meta["shared_fraction_paper"],
        "shared_notebook": meta["shared_fraction_notebook"],
        "enc_cos_mean": float(table["enc_cos"].mean()),
        "dec_cos_mean": float(table["dec_cos"].mean()),
        **bimodality_stats(table["enc_cos"].to_numpy(), "enc_"),
        **bimodality_stats(table["dec_cos"].to_numpy(), "dec_"),
        "fvu": [e["fvu"] for e in evs],
        "l0": [e["l0"] for e in evs],
        "dead_fraction": [e["dead_fraction"] for e in evs],
    }
    return row, table


def train(args) -> None:
    import torch

    from saeseeds.sae.batches import BatchPlan, BatchReader
    from saeseeds.sae.coder import SaeConfig
    from saeseeds.activations.store import open_store
    from saeseeds.sae.train import TrainConfig, total_steps, TrainingRun, default_lr, lr_factor

    torch.set_num_threads(args.threads)
    store = open_store(args.store, verify=True)
    n_train = store.n_train
    tokens = int(round(args.passes * n_train / args.batch_size)) * args.batch_size
    sae_cfg = SaeConfig(arch="topk", num_latents=args.latents, k=args.k)
    cfg = TrainConfig(batch_size=args.batch_size, max_tokens=tokens, optimizer=args.optimizer, lr=args.lr, warmup_steps=args.warmup, state_every_steps=0)
    num_steps = total_steps(n_train, cfg)
    lr = cfg.lr or default_lr(sae_cfg.num_latents, cfg.optimizer)
    wanted = sorted({max(1, min(num_steps, int(round(float(p) * n_train / args.batch_size)))) for p in args.checkpoints.split(",")} | {num_steps})
    out = Path(args.out) / args.label
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "checkpoints.jsonl"
    log_path.write_text("")
    heldout = store.heldout()
    plan = BatchPlan(n_train, store.array.chunks[0], cfg.batch_size, num_steps, data_seed=args.data_seed, window_rows=cfg.window_rows)
    run = TrainingRun(store, sae_cfg, cfg, list(args.seeds), args.data_seed, num_steps, lr, torch.device("cpu"))
    recipe = {"latents": args.latents, "k": args.k, "optimizer": args.optimizer, "lr": lr, "warmup": args.warmup, "batch_size": args.batch_size,
              "passes": args.passes, "num_steps": num_steps, "seeds": list(args.seeds), "data_seed": args.data_seed, "n_train": n_train}
    print(f"[{args.label}] {json.dumps(recipe)} checkpoints at steps {wanted}", flush=True)
    t0 = time.perf_counter()
    train_s = 0.0
    with BatchReader(store, plan, prefetch=cfg.prefetch_batches, device=torch.device("cpu")) as reader:
        batches = iter(reader)
        tick = time.perf_counter()
        for step in range(num_steps):
            run.step(step, next(batches))
            done = step + 1
            if done in wanted:
                run.check_finite(done)
                train_s += time.perf_counter() - tick
                row, table = checkpoint_row(_coders(run), heldout, args.threshold)
                row = {"label": args.label, **recipe, "step": done, "tokens": done * cfg.batch_size, "passes_seen": done * cfg.batch_size / n_train,
                       "lr_now": lr * (lr_factor(step, cfg.warmup_steps, num_steps) if args.optimizer == "adam" else 1.0),
                       "train_s": round(train_s, 1), "steps_per_s": round(done / train_s, 2), **row}
                table.to_parquet(out / f"matches-step{done}.parquet")
                with log_path.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"[{args.label}] step {done}/{num_steps} tokens {row['tokens']} ({row['passes_seen']:.2f} passes) "
                      f"shared {row['shared_paper']:.4f} BC enc {row['enc_sarle_bc']:.3f} dec {row['dec_sarle_bc']:.3f} "
                      f"D enc {row['enc_ashman_d']:.2f} dec {row['dec_ashman_d']:.2f} w_high enc {row['enc_weight_high']:.3f} dec {row['dec_weight_high']:.3f} "
                      f"FVU {np.mean(row['fvu']):.4f} L0 {np.mean(row['l0']):.2f} dead {np.mean(row['dead_fraction']):.3f} "
                      f"({row['steps_per_s']} steps/s, {time.perf_counter() - t0:.0f} s wall)", flush=True)
                tick = time.perf_counter()


def load_rows(out: str | Path) -> pd.DataFrame:
    """Returns every checkpoint row of every run under `out`, with mean FVU / L0 over seeds."""
    rows = [json.loads(line) for p in sorted(Path(out).glob("*/checkpoints.jsonl")) for line in p.read_text().splitlines() if line.strip()]
    df = pd.DataFrame(rows)
    for col in ("fvu", "l0", "dead_fraction"):
        df[col] = df[col].map(np.mean)
    return df


def table(args) -> None:
    df = load_rows(args.out)
    cols = {"label": "run", "passes": "budget (passes)", "passes_seen": "passes seen", "tokens": "tokens", "lr_now": "lr at ckpt",
            "shared_paper": "shared (paper)", "enc_sarle_bc": "BC enc", "dec_sarle_bc": "BC dec", "enc_ashman_d": "D enc", "dec_ashman_d": "D dec",
            "enc_weight_high": "high-mode weight enc", "dec_weight_high": "high-mode weight dec", "dec_mu_low": "dec low-mode mean", "dec_mu_high": "dec high-mode mean", "fvu": "held-out FVU", "l0": "L0", "dead_fraction": "dead"}
    print("| " + " | ".join(cols.values()) + " |")
    print("|" + "---|" * len(cols))
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if c == "tokens":
                cells.append(f"{v / 1e6:.2f}M")
            elif c == "lr_now":
                cells.append(f"{v:.2g}")
            elif c in ("passes", "passes_seen"):
                cells.append(f"{v:g}" if c == "passes" else f"{v:.2f}")
            elif isinstance(v, float):
                cells.append(f"{v:.3f}")
            else:
                cells.append(str(v))
        print("| " + " | ".join(cells) + " |")


def figures(args) -> None:
    import altair as alt
    import vl_convert as vlc

    df = load_rows(args.out)
    long = []
    for _, r in df.iterrows():
        end = "end of run (lr 0)" if r["step"] == r["num_steps"] else "mid-run checkpoint"
        for metric, col in (("shared fraction (paper, 0.7)", "shared_paper"), ("Sarle BC, decoder", "dec_sarle_bc"), ("Sarle BC, encoder", "enc_sarle_bc"),
                            ("Ashman's D, decoder", "dec_ashman_d"), ("Ashman's D, encoder", "enc_ashman_d"), ("held-out FVU", "fvu")):
            ref = {"dec_sarle_bc": 5 / 9, "enc_sarle_bc": 5 / 9, "dec_ashman_d": 2.0, "enc_ashman_d": 2.0}.get(col)
            long.append({"run": r["label"], "tokens (M)": r["tokens"] / 1e6, "metric": metric, "value": r[col], "point": end, "ref": ref})
    data = pd.DataFrame(long)
    base = alt.Chart().encode(
        x=alt.X("tokens (M):Q", scale=alt.Scale(type="log"), title="tokens seen (millions, log)"),
        y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
        color=alt.Color("run:N"),
    )
    refs = alt.Chart().mark_rule(strokeDash=[4, 3], color="gray").encode(y="max(ref):Q")  # BC 5/9, D 2: two-mode lines
    chart = alt.layer(base.mark_line(point=False, opacity=0.6), base.mark_point(filled=True, size=40).encode(shape=alt.Shape("point:N", title="checkpoint")), refs,
                      data=data).properties(width=260, height=170).facet(
        facet=alt.Facet("metric:N", title=None, sort=[m for m in data["metric"].unique()]), columns=3
    ).resolve_scale(y="independent").properties(title="Two seeds of TopK SAEs on SmolLM2-135M layers.6.mlp (kjv-pydoc): agreement against tokens seen (dashed: BC 5/9, D 2)")
    Path(args.docs).mkdir(parents=True, exist_ok=True)
    Path(args.docs, "convergence.png").write_bytes(vlc.vegalite_to_png(chart.to_json(), scale=2))

    rows, names = [], []
    order = df.drop_duplicates("label").sort_values(["optimizer", "latents", "k", "passes"], ascending=[True, False, False, True])["label"]
    for label in order:
        last = df[df["label"] == label].sort_values("step").iloc[-1]
        m = pd.read_parquet(Path(args.out) / label / f"matches-step{int(last['step'])}.parquet")
        name = f"{label}: {last['tokens'] / 1e6:.2f}M tokens, shared {100 * last['shared_paper']:.1f}%"
        names.append(name)
        edges = np.round(np.arange(-0.1, 1.0 + 1e-9, 0.025), 3)
        for side in ("enc", "dec"):
            counts, _ = np.histogram(np.clip(m[f"{side}_cos"].to_numpy(), -0.1, 1.0), bins=edges)
            rows += [{"lo": float(lo), "hi": float(hi), "latents": int(c), "side": {"enc": "encoder rows", "dec": "decoder rows"}[side], "run": name}
                     for lo, hi, c in zip(edges[:-1], edges[1:], counts)]
    bars = alt.Chart().mark_bar().encode(
        x=alt.X("lo:Q", title="cosine with matched latent", scale=alt.Scale(domain=[-0.1, 1.0]), axis=alt.Axis(values=[0, 0.2, 0.4, 0.6, 0.8, 1.0])), x2="hi:Q",
        y=alt.Y("latents:Q", title="latents"), y2=alt.datum(0),
    )
    rule = alt.Chart(pd.DataFrame({"x": [0.7]})).mark_rule(strokeDash=[4, 3], color="black").encode(x="x:Q")
    hist = alt.layer(bars, rule, data=pd.DataFrame(rows)).properties(width=300, height=150).facet(
        row=alt.Row("run:N", title=None, sort=names, header=alt.Header(labelAngle=0, labelAlign="left", labelOrient="top")),
        column=alt.Column("side:N", title=None, sort=["encoder rows", "decoder rows"]),
    ).properties(title="Matched cosines of seeds 0 and 1 at each run's last checkpoint (dashed: threshold 0.7)")
    Path(args.docs, "convergence_cosines.png").write_bytes(vlc.vegalite_to_png(hist.to_json(), scale=2))
    print(f"wrote {args.docs}/convergence.png and {args.docs}/convergence_cosines.png")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--store", required=True)
    t.add_argument("--out", default="benchmarks/out/convergence")
    t.add_argument("--label", required=True)
    t.add_argument("--latents", type=int, default=1152)
    t.add_argument("--k", type=int, default=8)
    t.add_argument("--optimizer", default="adam", choices=("adam", "signum"))
    t.add_argument("--lr", type=float, default=None, help="peak lr; default 2e-3 for adam (config.yaml's recipe), saeseeds' default for signum")
    t.add_argument("--warmup", type=int, default=50)
    t.add_argument("--batch-size", type=int, default=1024)
    t.add_argument("--passes", type=float, required=True, help="training budget in passes over the store's training rows")
    t.add_argument("--checkpoints", default="0.25,0.5,1,2,3,6,12,24,48", help="comma-separated passes at which to match (the run's end is always one)")
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    t.add_argument("--data-seed", type=int, default=1234)
    t.add_argument("--threshold", type=float, default=0.7)
    t.add_argument("--threads", type=int, default=2)
    for name in ("table", "figures"):
        p = sub.add_parser(name)
        p.add_argument("--out", default="benchmarks/out/convergence")
        if name == "figures":
            p.add_argument("--docs", default="docs")
    args = ap.parse_args(argv)
    if args.cmd == "train" and args.lr is None and args.optimizer == "adam":
        args.lr = 2e-3
    {"train": train, "table": table, "figures": figures}[args.cmd](args)


if __name__ == "__main__":
    main()
