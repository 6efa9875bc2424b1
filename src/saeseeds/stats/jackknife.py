"""Seed-level uncertainty: leave-one-seed-out jackknife intervals for the study's headline numbers.

The unit that repeats in a seed study is the seed (one training run), not the latent and not the pair:
the 36 pairs of 9 seeds share seeds, and the 8 points of the only-in-base curve are means over the same
9 SAEs. So every interval here resamples seeds. Each replicate drops one seed and recomputes the
statistic from what the remaining seeds give: the mean over their pairs (shared fraction under each
labelling, PW-MCC), only-in-base over their subsets at their largest size, and both power-law fits of
their only-in-base curve (offset c, AIC difference).

Why a jackknife and not a seed bootstrap:
- A bootstrap resample of N seeds holds on average only N(1 - (1 - 1/N)^N) distinct seeds (5.9 of 9).
  Statistics defined on N distinct seeds then do not exist in the resample: only-in-base at N, the
  curve's points for n above the number of distinct seeds, and so the power-law fits (a 9-seed study
  would fit about 5 points instead of 8). Pairs of a seed with its own copy must be dropped, so pair counts vary by resample too.
- Every jackknife replicate has N - 1 distinct seeds, so every statistic is recomputed by its own
  definition, only one seed smaller; nothing is ever paired with a copy of itself.
- The jackknife variance is conservative for these statistics (Efron & Stein 1981: in expectation it
  over-estimates the variance of a symmetric function of independent units), which is the safe side
  for claims such as "the offset c is above 0".
- No random numbers: the same inputs give the same interval, in any order of the seeds.

The interval is estimate ± t(level, N - 1) · SE_jack with SE_jack² = (N - 1)/N · Σ (θ₋ₛ - θ̄)², centred on
the full-sample estimate. A replicate of a statistic defined at the largest number of seeds (only-in-base
at N) is that statistic at N - 1 seeds; its level differs, which the interval does not use (only the
spread of the replicates enters SE_jack). With 2 seeds (one pair) there is no replicate with a pair
left, so the interval is NaN: one pair says nothing about seed-to-seed variation. The power-law fits
need N - 1 seeds to give at least 4 curve points for the offset model (N >= 6), else NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from saeseeds.stats.agreement import LABELLINGS, labelled_shared
from saeseeds.stats.powerlaw import MIN_POINTS_OFFSET, fit_only_in_base

LEVEL = 0.95
METHOD = "leave-one-seed-out jackknife"


def interval(estimate: float, replicates: Sequence[float], level: float = LEVEL) -> dict[str, float]:
    """Returns {se, ci_lo, ci_hi} of the jackknife interval around `estimate` from leave-one-out `replicates`.

    NaN when there are fewer than 2 replicates or any replicate (or the estimate) is not finite: a
    statistic that some replicate cannot compute has no jackknife interval.
    """
    reps = np.asarray(replicates, dtype=np.float64)
    g = reps.size
    if g < 2 or not np.isfinite(reps).all() or not math.isfinite(estimate):
        return {"se": math.nan, "ci_lo": math.nan, "ci_hi": math.nan}
    se = math.sqrt((g - 1) / g * float(np.sum((reps - reps.mean()) ** 2)))
    half = float(stats.t.ppf(0.5 + level / 2, g - 1)) * se
    return {"se": se, "ci_lo": float(estimate) - half, "ci_hi": float(estimate) + half}


def replicates(seeds: Sequence[int], statistic: Callable[[list[int]], float]) -> list[float]:
    """Returns statistic(seeds without s) for every seed s, in sorted seed order."""
    seeds = sorted(seeds)
    return [float(statistic([t for t in seeds if t != s])) for s in seeds]


def pair_mean(values: Mapping[tuple[int, int], float], seeds: Sequence[int]) -> float:
    """Returns the mean of the per-pair `values` over every pair a < b of `seeds`; NaN without a pair."""
    seeds = sorted(seeds)
    pairs = [values[(a, b)] for i, a in enumerate(seeds) for b in seeds[i + 1 :]]
    return float(np.mean(pairs)) if pairs else math.nan


def pair_interval(values: Mapping[tuple[int, int], float], level: float = LEVEL) -> dict[str, float]:
    """Returns {estimate, se, ci_lo, ci_hi} of the mean of a per-pair statistic, jackknifed over seeds.

    `values` maps every pair (a, b), a < b, of the set's seeds to the pair's value.
    """
    seeds = sorted({s for pair in values for s in pair})
    for a, b in values:
        if a >= b:
            raise ValueError(f"pair ({a}, {b}): pairs must be keyed (a, b) with a < b")
    missing = [(a, b) for i, a in enumerate(seeds) for b in seeds[i + 1 :] if (a, b) not in values]
    if missing:
        raise ValueError(f"per-pair values miss pairs {missing[:3]}: every pair of seeds {seeds} is needed")
    estimate = pair_mean(values, seeds)
    reps = replicates(seeds, lambda kept: pair_mean(values, kept)) if len(seeds) >= 3 else []
    return {"estimate": estimate, **interval(estimate, reps, level)}


def _subsets_of(subsets: pd.DataFrame, kept: Sequence[int]) -> pd.DataFrame:
    """Returns the rows of `subsets` whose members are all in `kept` (the orphans table of those seeds)."""
    kept = {int(s) for s in kept}
    inside = subsets["members"].map(lambda m: all(int(s) in kept for s in m.split(",")))
    return subsets[inside.to_numpy(bool)]


def only_in_base_at_largest(subsets: pd.DataFrame) -> float:
    """Returns the mean only-in-base fraction over the (subset, base) rows of the largest subset size."""
    if subsets.empty:
        return math.nan
    largest = subsets["size"].max()
    return float(subsets.loc[subsets["size"] == largest, "only_in_base"].mean())


def offset_statistics(subsets: pd.DataFrame) -> dict[str, float]:
    """Returns {powerlaw_c, powerlaw_delta_aic, powerlaw_f_statistic_descriptive} of the only-in-base curve; NaN if not fitted."""
    nan = {"powerlaw_c": math.nan, "powerlaw_delta_aic": math.nan, "powerlaw_f_statistic_descriptive": math.nan}
    if subsets.empty or subsets["size"].nunique() < MIN_POINTS_OFFSET:
        return nan
    fit = fit_only_in_base(subsets)
    if fit.offset is None:
        return nan
    none_nan = lambda v: math.nan if v is None else float(v)  # noqa: E731
    return {"powerlaw_c": float(fit.offset.params["c"]), "powerlaw_delta_aic": none_nan(fit.delta_aic),
            "powerlaw_f_statistic_descriptive": none_nan(fit.f_statistic)}


def subset_intervals(subsets: pd.DataFrame, level: float = LEVEL) -> dict[str, float]:
    """Returns estimate and interval of only-in-base at N, the offset c and ΔAIC from one set's subsets table.

    Keys: `only_in_base_max_seeds`, `powerlaw_c`, `powerlaw_delta_aic` each with `_se`, `_ci_lo`, `_ci_hi`,
    plus `powerlaw_f_statistic_descriptive` (descriptive only: the curve's points share their SAEs, so the F
    distribution, and any p-value from it, does not apply).
    """
    seeds = sorted({int(s) for m in subsets["members"] for s in m.split(",")})
    kept = [_subsets_of(subsets, [t for t in seeds if t != s]) for s in seeds] if len(seeds) >= 3 else []
    out: dict[str, float] = {}
    estimate = only_in_base_at_largest(subsets)
    out["only_in_base_max_seeds"] = estimate
    ci = interval(estimate, [only_in_base_at_largest(k) for k in kept], level)
    out |= {f"only_in_base_max_seeds_{k}": v for k, v in ci.items()}
    full = offset_statistics(subsets)
    reps = [offset_statistics(k) for k in kept]
    for name in ("powerlaw_c", "powerlaw_delta_aic"):
        out[name] = full[name]
        ci = interval(full[name], [r[name] for r in reps], level)
        out |= {f"{name}_{k}": v for k, v in ci.items()}
    out["powerlaw_f_statistic_descriptive"] = full["powerlaw_f_statistic_descriptive"]
    return out


def seed_intervals(
    tables: Mapping[tuple[int, int], pd.DataFrame],
    pwmcc: pd.DataFrame,
    subsets: pd.DataFrame,
    threshold: float,
    level: float = LEVEL,
) -> dict[str, float | str]:
    """Returns the summary columns of one SAE set's seed-level intervals.

    `tables` maps every seed pair (a, b), a < b, to its matches table; `pwmcc` is the set's per-pair
    PW-MCC table (`saeseeds.stats.pwmcc.pair_table`); `subsets` its orphans subsets table. Keys:
    `shared_{labelling}_{se,ci_lo,ci_hi}` for the three labellings of `saeseeds.stats.agreement`,
    `pwmcc_{mean,std,se,ci_lo,ci_hi}`, and those of `subset_intervals`, plus `interval_method`.
    """
    out: dict[str, float | str] = {}
    for labelling in LABELLINGS:
        values = {pair: float(labelled_shared(t, threshold, labelling).mean()) for pair, t in tables.items()}
        ci = pair_interval(values, level)
        out |= {f"shared_{labelling}_{k}": v for k, v in ci.items() if k != "estimate"}
    values = {(int(a), int(b)): float(v) for a, b, v in zip(pwmcc["a"], pwmcc["b"], pwmcc["pwmcc"])}
    if set(values) != set(tables):
        raise ValueError(f"PW-MCC pairs {sorted(values)} differ from the matched pairs {sorted(tables)}")
    ci = pair_interval(values, level)
    out |= {"pwmcc_mean": ci["estimate"], "pwmcc_std": float(np.std(list(values.values()))),
            **{f"pwmcc_{k}": v for k, v in ci.items() if k != "estimate"}}
    out |= subset_intervals(subsets, level)
    out["interval_method"] = METHOD
    return out
