"""Seed-level jackknife intervals: a hand-computed case, determinism, and what each replicate recomputes."""

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from saeseeds.stats.jackknife import (
    interval,
    only_in_base_at_largest,
    pair_interval,
    seed_intervals,
    subset_intervals,
)
from saeseeds.stats.orphans import subset_table


def test_pair_interval_by_hand():
    # Seeds 0, 1, 2; pair values (0,1)=0.2, (0,2)=0.4, (1,2)=0.9. Estimate: mean 0.5.
    # Leave out 0 -> only (1,2): 0.9; out 1 -> (0,2): 0.4; out 2 -> (0,1): 0.2. Mean of replicates 0.5.
    # SE^2 = (3-1)/3 * ((0.4)^2 + (0.1)^2 + (0.3)^2) = 2/3 * 0.26; half width = t(0.975, 2) * SE.
    result = pair_interval({(0, 1): 0.2, (0, 2): 0.4, (1, 2): 0.9})
    se = math.sqrt(2 / 3 * 0.26)
    half = stats.t.ppf(0.975, 2) * se
    assert result["estimate"] == pytest.approx(0.5)
    assert result["se"] == pytest.approx(se)
    assert (result["ci_lo"], result["ci_hi"]) == pytest.approx((0.5 - half, 0.5 + half))


def test_jackknife_of_a_mean_is_the_classical_standard_error():
    # For the plain mean the jackknife SE is exactly s / sqrt(n).
    x = np.array([0.3, 0.1, 0.7, 0.4, 0.9])
    reps = [(x.sum() - v) / (len(x) - 1) for v in x]
    assert interval(x.mean(), reps)["se"] == pytest.approx(x.std(ddof=1) / math.sqrt(len(x)))


def test_is_deterministic_and_independent_of_pair_order():
    rng = np.random.default_rng(0)
    values = {pair: float(rng.random()) for pair in itertools.combinations(range(6), 2)}
    reordered = dict(reversed(list(values.items())))
    assert pair_interval(values) == pair_interval(values) == pair_interval(reordered)


def test_two_seeds_have_no_interval_and_missing_pairs_are_named():
    result = pair_interval({(0, 1): 0.3})
    assert result["estimate"] == 0.3 and math.isnan(result["ci_lo"]) and math.isnan(result["se"])
    with pytest.raises(ValueError, match="miss pairs"):
        pair_interval({(0, 1): 0.3, (0, 2): 0.4})


def masks(seeds, n, rng):
    """Random shared masks for every ordered pair, symmetric in count like real matchings."""
    out = {}
    for a, b in itertools.permutations(seeds, 2):
        out[(a, b)] = rng.random(n) < 0.5
    return out


def test_subset_replicates_are_the_orphans_table_of_the_remaining_seeds():
    rng = np.random.default_rng(1)
    seeds = list(range(7))
    shared = masks(seeds, 200, rng)
    subsets = subset_table(shared)
    out = subset_intervals(subsets)
    # Recompute each replicate from scratch: the orphan table of 6 seeds, at its largest size (6).
    reps = []
    for s in seeds:
        kept = [t for t in seeds if t != s]
        table = subset_table({k: v for k, v in shared.items() if s not in k})
        assert table["size"].max() == len(kept)
        reps.append(only_in_base_at_largest(table))
    expected = interval(only_in_base_at_largest(subsets), reps)
    assert out["only_in_base_max_seeds"] == pytest.approx(only_in_base_at_largest(subsets))
    assert out["only_in_base_max_seeds_se"] == pytest.approx(expected["se"])
    # 7 seeds: replicates have 6 seeds, 5 curve points, enough for the offset model.
    assert math.isfinite(out["powerlaw_c"]) and math.isfinite(out["powerlaw_c_se"])
    assert math.isfinite(out["powerlaw_delta_aic_ci_lo"]) and math.isfinite(out["powerlaw_f_statistic_descriptive"])
    assert subset_intervals(subsets) == out  # deterministic


def test_few_seeds_leave_the_power_law_intervals_nan():
    rng = np.random.default_rng(2)
    subsets = subset_table(masks(range(5), 100, rng))  # replicates have 4 seeds: 3 points, no offset fit
    out = subset_intervals(subsets)
    assert math.isfinite(out["powerlaw_c"]) and math.isnan(out["powerlaw_c_ci_lo"])
    assert math.isfinite(out["only_in_base_max_seeds_ci_lo"])


def matches(n, rng, shared_fraction):
    cos = np.where(rng.random(n) < shared_fraction, 0.9, 0.2)
    p = np.arange(n)
    return pd.DataFrame({"latent": p, "enc_partner": p, "enc_cos": cos, "dec_partner": p, "dec_cos": cos,
                         "enc_maxcos": cos, "dec_maxcos": cos})


def test_seed_intervals_give_the_summary_columns():
    rng = np.random.default_rng(3)
    seeds = [0, 1, 2, 3]
    pairs = list(itertools.combinations(seeds, 2))
    tables = {pair: matches(50, rng, 0.3) for pair in pairs}
    pwmcc = pd.DataFrame({"a": [a for a, _ in pairs], "b": [b for _, b in pairs], "pwmcc": rng.random(len(pairs))})
    subsets = subset_table(masks(seeds, 50, rng))
    out = seed_intervals(tables, pwmcc, subsets, 0.7)
    paper = pair_interval({p: float((t.enc_cos >= 0.7).mean()) for p, t in tables.items()})
    assert (out["shared_paper_ci_lo"], out["shared_paper_ci_hi"]) == pytest.approx((paper["ci_lo"], paper["ci_hi"]))
    assert out["pwmcc_mean"] == pytest.approx(pwmcc["pwmcc"].mean())
    assert out["pwmcc_ci_lo"] < out["pwmcc_mean"] < out["pwmcc_ci_hi"]
    assert out["interval_method"] == "leave-one-seed-out jackknife"
    with pytest.raises(ValueError, match="differ from the matched pairs"):
        seed_intervals(tables, pwmcc.iloc[1:], subsets, 0.7)


def test_fit_table_and_fig2_subtitle_carry_the_seed_intervals_and_no_p_value():
    import json

    from saeseeds.figures.paper import fig2_only_in_base

    from saeseeds.figures.style import FigureStyle, load_style
    from saeseeds.stats.powerlaw import fit_only_in_base, fits_table

    rng = np.random.default_rng(4)
    subsets = subset_table(masks(range(7), 300, rng))
    intervals = {"seven": subset_intervals(subsets)}
    table = fits_table({"seven": fit_only_in_base(subsets)}, intervals)
    offset = table[table["model"] == "a * n^-b + c"].iloc[0]
    assert "f_pvalue" not in table.columns and np.isfinite(offset["f_statistic_descriptive"])
    assert offset["c_seed_ci_lo"] == pytest.approx(intervals["seven"]["powerlaw_c_ci_lo"])
    assert offset["delta_aic_seed_ci_hi"] == pytest.approx(intervals["seven"]["powerlaw_delta_aic_ci_hi"])
    style = load_style(Path(__file__).resolve().parents[2] / "workflow" / "report" / "figure_style.json")
    assert isinstance(style, FigureStyle)
    chart = fig2_only_in_base(subsets.assign(label="seven"), {"seven": fit_only_in_base(subsets)}, style=style,
                              intervals=intervals)
    spec = json.dumps(chart.to_dict(), ensure_ascii=False)
    assert "seed jackknife 95%: c in [" in spec and "descriptive, no p-value" in spec and "F-test p" not in spec
