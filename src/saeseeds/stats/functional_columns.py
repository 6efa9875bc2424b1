"""The summary table's functional columns (loss recovered, substitution scores); pandas only, so the summary
rule does not import the model code."""

from __future__ import annotations

import pandas as pd


def summary_columns(loss: pd.DataFrame, substitution: pd.DataFrame | None, model: pd.DataFrame | None = None) -> dict[str, float]:
    """Returns the summary table's functional columns of one (site, sae): loss recovered and KL (mean and spread over
    seeds, with the clean and zero-ablation cross-entropies), the mean substitution scores of shared and orphan
    latents that fire on held-out rows, with both controls, and the mean scores through the model of the sample."""
    out = {
        "loss_recovered": float(loss["loss_recovered"].mean()),
        "loss_recovered_std": float(loss["loss_recovered"].std(ddof=0)),
        "kl_sae": float(loss["kl_sae"].mean()),
        "ce_clean": float(loss["ce_clean"].iloc[0]),
        "ce_zero": float(loss["ce_zero"].iloc[0]),
        "ce_sae": float(loss["ce_sae"].mean()),
    }
    if substitution is not None:
        firing = substitution[substitution["firing_rows"] > 0]
        for group, rows in (("shared", firing[firing["shared"]]), ("orphan", firing[~firing["shared"]])):
            out[f"substitution_{group}"] = float(rows["score_partner"].mean()) if len(rows) else float("nan")
        out["substitution_random"] = float(firing["score_random"].mean())
        out["substitution_nonpartner"] = float(firing["score_nonpartner"].mean())
        for method in ("greedy", "maxcos", "sinkhorn"):  # the other matchings' partners (NaN where they do not apply)
            column = f"score_{method}"
            out[f"substitution_{method}"] = float(firing[column].mean()) if column in firing else float("nan")
    if model is not None:
        out["model_latents"] = int(model["kl_sae"].notna().sum())
        for name in ("partner", "random", "nonpartner"):
            out[f"model_substitution_{name}"] = float(model[f"score_{name}"].mean())
    return out
