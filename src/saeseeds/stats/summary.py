"""The study's summary table: one row per (site, SAE variant) with the numbers a reader compares with the paper.

Written as parquet (for the figures of sweeps: Figs 4, 5, A1 read it), CSV, markdown and HTML (for the
report). Columns: where (site, layer, stream), what (arch, latents, k, training tokens, seeds), health
(FVU, L0, dead fraction), agreement under the three labellings of `saeseeds.stats.agreement` with spread
over pairs, PW-MCC (`saeseeds.stats.pwmcc`), chance levels (`saeseeds.stats.chance`), only-in-base at 2 and N seeds and
the offset power-law fit; every interval is a seed-level jackknife (`saeseeds.stats.jackknife`).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from saeseeds.stats.agreement import agreement_stats
from saeseeds.common.atomic import atomic_write, write_parquet
from saeseeds.stats.bimodality import matched_cosine_bimodality
from saeseeds.stats.functional_columns import summary_columns as functional_columns
from saeseeds.stats.jackknife import seed_intervals
from saeseeds.stats.pwmcc_stats import recovery_correlation

MARKDOWN_COLUMNS = {
    "site": "site", "sae": "SAE", "seeds": "seeds", "fvu": "FVU", "l0": "L0", "dead_fraction": "dead",
    "shared_paper_mean": "shared (paper)", "shared_paper_std": "± std", "shared_paper_ci_lo": "95% CI lo",
    "shared_paper_ci_hi": "95% CI hi", "shared_notebook_mean": "shared (notebook)",
    "shared_maxcos_mean": "shared (max-cos)", "pwmcc_mean": "PW-MCC", "pwmcc_ci_lo": "PW-MCC CI lo",
    "pwmcc_ci_hi": "PW-MCC CI hi", "enc_maxcos_mean": "mean max-cos",
    "dec_sarle_bc": "BC dec", "dec_ashman_d": "D dec",
    "chance_init_shared_paper": "chance (init)", "only_in_base_max_seeds": "only-in-base at N",
    "loss_recovered": "loss recovered", "substitution_shared": "subst. (shared)", "substitution_orphan": "subst. (orphan)",
}


def hook_position(hook: str) -> tuple[int | None, str]:
    """Returns (layer, stream) of a hook name: `layers.6.mlp` -> (6, 'mlp'), `h.3` -> (3, 'residual')."""
    parts = hook.split(".")
    numbers = [int(p) for p in parts if p.isdigit()]
    layer = numbers[0] if numbers else None
    last = parts[-1]
    if last.isdigit():
        return layer, "residual"
    if last in ("mlp", "feed_forward", "ffn"):
        return layer, "mlp"
    if last in ("attn", "self_attn", "attention"):
        return layer, "attention"
    return layer, last


def summarize_sae(sae_dir: str | Path, seeds: Sequence[int], threshold: float, loss: str | None = None, substitution: str | None = None,
                  model_substitution: str | None = None) -> dict:
    """Returns the summary row of one (site, sae) folder: results/{model}/{dataset}/{hook}/{sae}.

    What was trained (arch, latents, k, tokens) is read from the seeds' metrics.json, not the config.
    `loss`, `substitution` and `model_substitution` are its functional tables (saeseeds.functional.loss), when measured.
    """
    sae_dir = Path(sae_dir)
    seeds = sorted(seeds)
    metrics = [json.loads((sae_dir / f"seed{s}" / "metrics.json").read_text()) for s in seeds]
    pairs = [(a, b) for i, a in enumerate(seeds) for b in seeds[i + 1 :]]
    tables = [pd.read_parquet(sae_dir / "matches" / f"seed{a}-seed{b}.parquet") for a, b in pairs]
    pwmcc = pd.read_parquet(sae_dir / "consistency" / "pwmcc.parquet")
    chance = json.loads((sae_dir / "chance.json").read_text())
    subsets = pd.read_parquet(sae_dir / "orphans" / "subsets.parquet")
    by_size = subsets.groupby("size")["only_in_base"]
    largest = int(subsets["size"].max())
    model, dataset, hook, sae = sae_dir.parts[-4:]
    layer, stream = hook_position(hook)
    variant = metrics[0]["sae"]

    def mean_of(key: str) -> float:
        # An external set has no training metrics (None): NaN, and the report says why (metrics.json "external").
        values = [m[key] for m in metrics if m.get(key) is not None]
        return float(np.mean(values)) if values else float("nan")

    row = {
        "site": f"{model}/{dataset}/{hook}", "model": model, "dataset": dataset, "hook": hook,
        "layer": layer, "stream": stream, "sae": sae, "arch": variant["arch"], "num_latents": int(variant["num_latents"]),
        "k": variant.get("k") if variant["arch"] in ("topk", "batchtopk") else None,
        "train_tokens": int(metrics[0]["tokens_seen"]) if metrics[0].get("tokens_seen") is not None else None,
        # recipe options added later: checkpoints trained before them used the token shuffle and the batch mean
        "batch_order": metrics[0].get("train", {}).get("batch_order", "tokens"),
        "b_dec_init": metrics[0].get("train", {}).get("b_dec_init", "mean"),
        "seeds": len(seeds),
        "fvu": mean_of("fvu"),
        "l0": mean_of("l0"),
        "dead_fraction": mean_of("dead_fraction"),
    }
    row |= agreement_stats(tables, threshold)
    row |= matched_cosine_bimodality(tables)  # Sarle's BC, Ashman's D, high-mode weight of enc/dec matched cosines
    row |= {f"chance_init_{k}": v for k, v in (chance["init"] or {}).items()}  # None for external sets
    row |= {f"chance_random_{k}": v for k, v in chance["random"].items()}
    row |= {
        "only_in_base_2": float(by_size.mean().loc[2]),
        "only_in_base_max_seeds": float(by_size.mean().loc[largest]),
        "only_in_base_max_seeds_std": float(by_size.std(ddof=0).loc[largest]),
    }
    if loss is not None:
        row |= functional_columns(pd.read_parquet(loss), pd.read_parquet(substitution) if substitution else None,
                                  pd.read_parquet(model_substitution) if model_substitution else None)
    # PW-MCC as Song et al.'s released code computes it (signed cosine) is the mean matched decoder cosine.
    row["pwmcc_signed"] = row["dec_cos_mean"]
    row |= seed_intervals(dict(zip(pairs, tables)), pwmcc, subsets, threshold)
    row |= recovery_correlation(pwmcc)
    return row


def summary_table(entries: Sequence[dict[str, Any]], threshold: float) -> pd.DataFrame:
    """Returns the summary of every entry {dir, seeds}, in the given order."""
    table = pd.DataFrame([summarize_sae(e["dir"], e["seeds"], threshold, e.get("loss"), e.get("substitution"), e.get("model_substitution")) for e in entries])
    table["k"] = table["k"].astype("Int64")
    if "train_tokens" in table:
        table["train_tokens"] = table["train_tokens"].astype("Int64")
    table["layer"] = table["layer"].astype("Int64")
    return table


def to_markdown(table: pd.DataFrame) -> str:
    """Returns the reader's columns of the summary as a GitHub markdown table (fractions to 3 decimals)."""
    cols = [c for c in MARKDOWN_COLUMNS if c in table.columns]
    lines = ["| " + " | ".join(MARKDOWN_COLUMNS[c] for c in cols) + " |", "|" + "---|" * len(cols)]
    for _, row in table[cols].iterrows():
        cells = [("" if pd.isna(v) else f"{v:.3f}") if isinstance(v, float) else ("" if pd.isna(v) else str(v)) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_html(table: pd.DataFrame, title: str) -> str:
    """Returns the reader's columns of the summary as a small standalone HTML page (the report embeds HTML)."""
    cols = [c for c in MARKDOWN_COLUMNS if c in table.columns]
    return table_html(table[cols].rename(columns=MARKDOWN_COLUMNS), title)


def table_html(table: pd.DataFrame, title: str) -> str:
    """Returns any table as a small standalone HTML page with numbers to 4 significant digits."""
    body = table.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="", border=0)
    style = "body{font-family:DejaVu Sans,sans-serif;font-size:13px} td,th{padding:3px 8px;text-align:right} th{border-bottom:1px solid #999}"
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body><h3>{html.escape(title)}</h3>{body}</body></html>\n"


def write_summary(entries: Sequence[dict[str, Any]], threshold: float, *, csv: str | Path, parquet: str | Path, markdown: str | Path, html: str | Path) -> pd.DataFrame:
    """Writes the summary in all four formats (each atomically) and returns it."""
    table = summary_table(entries, threshold)
    write_parquet(table, parquet)
    atomic_write(csv, lambda tmp: table.to_csv(tmp, index=False, float_format="%.4f"))
    atomic_write(markdown, lambda tmp: Path(tmp).write_text(to_markdown(table)))
    atomic_write(html, lambda tmp: Path(tmp).write_text(to_html(table, "Summary: one row per site and SAE variant")))
    return table
