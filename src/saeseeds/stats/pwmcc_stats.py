"""PW-MCC against ground truth across seed pairs (no torch, so the summary job starts without it)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def recovery_correlation(table: pd.DataFrame) -> dict[str, float]:
    """Returns Pearson and Spearman correlations, over seed pairs, of PW-MCC with the pair's ground truth.

    The pair's ground truth is the mean over its two seeds of the fraction of true features recovered
    (`saeseeds.synthetic.recovery`), and of the truth MCC. With a single synthetic variant this is Song et al.'s
    check done across seed pairs instead of across variants; pairs share seeds, so the correlation is
    descriptive (no p-value). NaN when there are fewer than 3 pairs or a column is constant.
    """
    out = {}
    if not {"recovered_a", "truth_mcc_a"} <= set(table.columns):
        return out
    for name in ("recovered", "truth_mcc"):
        truth = (table[f"{name}_a"] + table[f"{name}_b"]) / 2
        ok = len(table) >= 3 and truth.std() > 0 and table["pwmcc"].std() > 0
        out[f"pwmcc_{name}_pearson"] = float(np.corrcoef(table["pwmcc"], truth)[0, 1]) if ok else float("nan")
        out[f"pwmcc_{name}_spearman"] = float(table["pwmcc"].rank().corr(truth.rank())) if ok else float("nan")
    return out
