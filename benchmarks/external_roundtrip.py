"""The default study's main set analysed as someone else's SAEs: exported, shuffled, read back, same answers?

    python benchmarks/external_roundtrip.py [--set results/smollm2-135m/kjv-pydoc/layers.6.mlp/topk-1152-k4] [--out export]

Needs the default study's results. Exports every seed of the set in SAELens and in dictionary_learning layout with
its latents shuffled (a different permutation per seed; `saeseeds.matching.export`), then

1. `saeseeds stability` on each export (the CLI a user runs on their own folders), timed;
2. the workflow on the exports as two external sets (`saes: {NAME: {checkpoints: [...]}}` under the same site), in
   a work folder of its own: import, match, chance, orphans, stability, consistency, summary, timed;

and compares with the in-workflow analysis of the trained set after mapping ids back through the permutations:
partner ids, `n_shared` and `shared` flags, matched cosines (largest difference), shared fractions and
only-in-base at every subset size. Prints one line per check and the times (README, "Analyse SAEs you already have").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = {"sl": "SAELens", "dl": "dictionary_learning"}


def export_set(sae_dir: Path, out: Path, seeds: list[int]) -> dict[str, dict[int, np.ndarray]]:
    from saeseeds.matching.export import export_checkpoint

    perms = {}
    for short, layout in LAYOUTS.items():
        perms[short] = {s: export_checkpoint(sae_dir / f"seed{s}", out / short / f"seed{s}", layout, shuffle_seed=100 + s) for s in seeds}
    return perms


def normalised(table: pd.DataFrame, label: str, seeds: list[int], perms: dict[int, np.ndarray] | None = None) -> pd.DataFrame:
    """Returns a stability table keyed by seed and the trained set's latent ids: its labels and column suffixes are
    `label.format(s)` per seed (the CLI labels checkpoints by position, the workflow "seed{s}"); with `perms`
    (an export's), latent i of seed s is mapped back to perm[i]."""
    ids = (lambda s, i: int(perms[s][i]) if i >= 0 else -1) if perms else (lambda s, i: int(i))
    out = pd.DataFrame({"seed": [next(s for s in seeds if label.format(s) == lab) for lab in table["label"]]})
    out["latent"] = [ids(s, i) for s, i in zip(out["seed"], table["latent"])]
    out["n_shared"] = table["n_shared"].to_numpy()
    for s in seeds:
        for col in ("partner", "dec_partner"):
            out[f"{col}_{s}"] = [ids(s, p) for p in table[f"{col}_{label.format(s)}"]]
        for col in ("enc_cos", "dec_cos", "shared"):
            out[f"{col}_{s}"] = table[f"{col}_{label.format(s)}"].to_numpy()
    return out.sort_values(["seed", "latent"]).reset_index(drop=True)


def compare_tables(ours: pd.DataFrame, theirs: pd.DataFrame, seeds: list[int]) -> dict[str, float]:
    """Returns the agreement of two `normalised` stability tables: same ids, n_shared and flags; cosine difference."""
    same_ids = all((ours[f"{c}_{s}"].to_numpy() == theirs[f"{c}_{s}"].to_numpy()).all()
                   for s in seeds for c in ("partner", "dec_partner", "shared"))
    same_ids &= bool((ours[["seed", "latent", "n_shared"]].to_numpy() == theirs[["seed", "latent", "n_shared"]].to_numpy()).all())
    cos_diff = max(float(np.nanmax(np.abs(ours[f"{c}_{s}"].to_numpy(np.float64) - theirs[f"{c}_{s}"].to_numpy(np.float64)), initial=0.0))
                   for s in seeds for c in ("enc_cos", "dec_cos"))
    return {"rows": len(ours), "ids_equal": same_ids, "max_cos_diff": cos_diff}


def run_workflow(work: Path, site: dict, out: Path, seeds: list[int], threshold: float) -> float:
    """Returns the seconds the workflow took on the exports as two external sets (its own work folder)."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["sites"] = [{**site, "saes": list(LAYOUTS)}]
    config["saes"] = {short: {"checkpoints": [str(out / short / f"seed{s}") for s in seeds]} for short in LAYOUTS}
    for key in ("autointerp", "functional"):
        config.pop(key, None)
    config["figures"] = {k: v for k, v in config.get("figures", {}).items() if k == "style"}
    config["figures"]["style"] = str(ROOT / "workflow" / "report" / "figure_style.json")
    config["match"]["threshold"] = threshold
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    d = f"results/{site['model']}/{site['dataset']}/{site['hooks'][0]}"
    targets = [f"{d}/{short}/{f}" for short in LAYOUTS for f in ("stability.parquet", "orphans/subsets.parquet", "chance.json",
                                                                 "consistency/pwmcc.parquet")] + ["results/summary.parquet"]
    cmd = [sys.executable, "-m", "snakemake", *targets, "--cores", "2", "--snakefile", str(ROOT / "workflow" / "Snakefile"),
           "--directory", str(work), "--configfile", str(work / "config.yaml"), "--quiet", "rules"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="results/smollm2-135m/kjv-pydoc/layers.6.mlp/topk-1152-k4")
    parser.add_argument("--out", default="export")
    parser.add_argument("--seeds", type=int, default=9)
    parser.add_argument("--threshold", type=float, default=0.7)
    args = parser.parse_args()
    sae_dir, out = Path(args.set), Path(args.out).resolve()
    seeds = list(range(args.seeds))
    shutil.rmtree(out, ignore_errors=True)
    perms = export_set(sae_dir, out, seeds)
    mine = normalised(pd.read_parquet(sae_dir / "stability.parquet"), "seed{}", seeds)
    for short, layout in LAYOUTS.items():
        table_path = out / f"{short}.parquet"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "saeseeds.cli", "stability", *[str(out / short / f"seed{s}") for s in seeds],
                        "-o", str(table_path)], check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
                       stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        result = compare_tables(mine, normalised(pd.read_parquet(table_path), "{}", seeds, perms[short]), seeds)
        print(f"saeseeds stability on the {layout} export: {seconds:.1f} s, {result}")
    model, dataset, hook = sae_dir.parts[-4:-1]
    work = out / "workflow"
    seconds = run_workflow(work, {"model": model, "dataset": dataset, "hooks": [hook]}, out, seeds, args.threshold)
    print(f"workflow on both exports as external sets: {seconds:.1f} s")
    base = work / "results" / model / dataset / hook
    ours_subsets = pd.read_parquet(sae_dir / "orphans" / "subsets.parquet")
    ours_curve = ours_subsets.groupby("size")["only_in_base"].mean()
    ours_pairs = pd.read_parquet(sae_dir / "consistency" / "pwmcc.parquet")
    for short, layout in LAYOUTS.items():
        result = compare_tables(mine, normalised(pd.read_parquet(base / short / "stability.parquet"), "seed{}", seeds, perms[short]), seeds)
        curve = pd.read_parquet(base / short / "orphans" / "subsets.parquet").groupby("size")["only_in_base"].mean()
        pairs = pd.read_parquet(base / short / "consistency" / "pwmcc.parquet")
        print(f"workflow, {layout} external set: stability {result}; only-in-base by size max |diff| "
              f"{float(np.abs(curve.to_numpy() - ours_curve.to_numpy()).max()):.3g} (ours at 9: {ours_curve.iloc[-1]:.4f}); "
              f"PW-MCC max |diff| {float(np.abs(pairs['pwmcc'].to_numpy() - ours_pairs['pwmcc'].to_numpy()).max()):.3g}")
    summary = pd.read_parquet(work / "results" / "summary.parquet")
    print(json.dumps({row["sae"]: {"shared_paper_mean": row["shared_paper_mean"], "only_in_base_max_seeds": row["only_in_base_max_seeds"]}
                      for _, row in summary.iterrows()}, default=float))


if __name__ == "__main__":
    main()
