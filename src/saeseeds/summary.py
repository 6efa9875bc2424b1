"""The study's summary table: one row per (site, sae) with the numbers a reader compares with the paper."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from saeseeds.atomic import atomic_write


def summarize_sae(sae_dir: str | Path, seeds: list[int], threshold: float) -> dict:
    """Returns training health, shared fractions (both definitions) and only-in-base for one (site, sae)."""
    sae_dir = Path(sae_dir)
    metrics = [json.loads((sae_dir / f"seed{s}" / "metrics.json").read_text()) for s in seeds]
    paper, notebook, enc_cos, enc_maxcos = [], [], [], []
    for path in sorted((sae_dir / "matches").glob("seed*-seed*.parquet")):
        table = pd.read_parquet(path)
        paper.append(table["shared"].mean())
        notebook.append(((table["enc_cos"] > threshold) & (table["dec_cos"] > threshold)).mean())
        enc_cos.append(table["enc_cos"].mean())
        enc_maxcos.append(table["enc_maxcos"].mean())
    subsets = pd.read_parquet(sae_dir / "orphans" / "subsets.parquet")
    by_size = subsets.groupby("size")["only_in_base"]
    largest = int(subsets["size"].max())
    parts = sae_dir.parts
    return {
        "site": "/".join(parts[-4:-1]),
        "sae": parts[-1],
        "seeds": len(seeds),
        "fvu": float(np.mean([m["fvu"] for m in metrics])),
        "l0": float(np.mean([m["l0"] for m in metrics])),
        "dead_fraction": float(np.mean([m["dead_fraction"] for m in metrics])),
        "shared_paper_mean": float(np.mean(paper)),
        "shared_paper_std": float(np.std(paper)),
        "shared_notebook_mean": float(np.mean(notebook)),
        "matched_enc_cos_mean": float(np.mean(enc_cos)),
        "enc_maxcos_mean": float(np.mean(enc_maxcos)),
        "only_in_base_2": float(by_size.mean().loc[2]),
        "only_in_base_max_seeds": float(by_size.mean().loc[largest]),
        "only_in_base_max_seeds_std": float(by_size.std(ddof=0).loc[largest]),
    }


def write_summary(sae_dirs: list[str | Path], seeds: list[int], threshold: float, out: str | Path) -> pd.DataFrame:
    """Writes summary.csv (atomically) and returns it."""
    table = pd.DataFrame([summarize_sae(d, seeds, threshold) for d in sae_dirs])
    atomic_write(out, lambda tmp: table.to_csv(tmp, index=False, float_format="%.4f"))
    return table
