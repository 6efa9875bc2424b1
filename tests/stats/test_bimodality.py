"""Bimodality statistics of matched cosines: hand-computed values, and a planted two-mode sample against one mode."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from saeseeds.stats.bimodality import ASHMAN_CLEAN, SARLE_UNIFORM, BimodalityError, bimodality_stats, gaussian_mixture, matched_cosine_bimodality, sarle_bc


def two_modes(n=1152, seed=0):
    """A planted matched-cosine sample: 40% orphans around 0.3, 60% shared latents near 0.95."""
    rng = np.random.default_rng(seed)
    low = rng.normal(0.3, 0.08, int(0.4 * n))
    high = rng.normal(0.95, 0.03, n - len(low))
    return np.concatenate([low, high])


def one_mode(n=1152, seed=0):
    return np.random.default_rng(seed).normal(0.6, 0.15, n)


def test_sarle_matches_hand_computed_value():
    # [0, 0, 0, 1]: bias-corrected skewness 2, excess kurtosis 4, so BC = (4 + 1) / (4 + 3 * 9 / (2 * 1)) = 2/7
    assert sarle_bc([0, 0, 0, 1]) == pytest.approx(2 / 7, rel=1e-12)


def test_sarle_agrees_with_scipy_bias_corrected_moments():
    x = np.random.default_rng(3).gamma(2.0, size=57)
    g, k, n = stats.skew(x, bias=False), stats.kurtosis(x, bias=False), len(x)
    assert sarle_bc(x) == pytest.approx((g**2 + 1) / (k + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3))), rel=1e-10)


def test_sarle_of_uniform_and_normal_samples_is_near_the_textbook_values():
    rng = np.random.default_rng(1)
    assert sarle_bc(rng.uniform(size=200_000)) == pytest.approx(SARLE_UNIFORM, abs=0.01)
    assert sarle_bc(rng.normal(size=200_000)) == pytest.approx(1 / 3, abs=0.01)


def test_mixture_matches_hand_computed_fit_on_two_clusters():
    # Clusters {0,1,2} and {10,11,12}: EM converges to means 1 and 11, variance 2/3 each, weights 1/2,
    # so Ashman's D = sqrt(2) * 10 / sqrt(4/3) = 10 * sqrt(1.5)
    gm = gaussian_mixture([0, 1, 2, 10, 11, 12])
    assert gm["mu_low"] == pytest.approx(1.0, abs=1e-9) and gm["mu_high"] == pytest.approx(11.0, abs=1e-9)
    assert gm["sd_low"] == pytest.approx(np.sqrt(2 / 3), abs=1e-9) and gm["sd_high"] == pytest.approx(np.sqrt(2 / 3), abs=1e-9)
    assert gm["weight_high"] == pytest.approx(0.5, abs=1e-9)
    assert gm["ashman_d"] == pytest.approx(10 * np.sqrt(1.5), abs=1e-8)


def test_statistics_separate_a_planted_two_mode_sample_from_a_one_mode_sample():
    two, one = bimodality_stats(two_modes()), bimodality_stats(one_mode())
    assert two["sarle_bc"] > SARLE_UNIFORM > one["sarle_bc"]
    assert two["ashman_d"] > ASHMAN_CLEAN > one["ashman_d"]
    assert two["bic_gain"] > 100 and one["bic_gain"] < 10
    assert two["weight_high"] == pytest.approx(0.6, abs=0.01)
    assert two["mu_low"] == pytest.approx(0.3, abs=0.01) and two["mu_high"] == pytest.approx(0.95, abs=0.01)


def test_matched_cosine_bimodality_averages_over_pairs():
    t1 = pd.DataFrame({"enc_cos": two_modes(seed=1), "dec_cos": one_mode(seed=1)})
    t2 = pd.DataFrame({"enc_cos": two_modes(seed=2), "dec_cos": one_mode(seed=2)})
    out = matched_cosine_bimodality([t1, t2])
    assert out["enc_sarle_bc"] == pytest.approx((sarle_bc(t1["enc_cos"]) + sarle_bc(t2["enc_cos"])) / 2)
    assert out["enc_ashman_d"] > ASHMAN_CLEAN > out["dec_ashman_d"]
    assert set(out) == {f"{s}_{n}" for s in ("enc", "dec") for n in ("sarle_bc", "ashman_d", "weight_high")}


def test_bad_samples_fail_with_one_line():
    with pytest.raises(BimodalityError, match="at least 4"):
        sarle_bc([0.1, 0.2])
    with pytest.raises(BimodalityError, match="non-finite"):
        gaussian_mixture([0.1, 0.2, np.nan, 0.3])
    assert np.isnan(sarle_bc([0.5] * 10))


def test_summary_row_carries_the_bimodality_of_its_pairs(tmp_path):
    from saeseeds.stats.summary import summarize_sae, to_markdown

    sae_dir = tmp_path / "m" / "d" / "layers.6.mlp" / "topk-8-k2"
    n = 400
    for s in (0, 1, 2):
        (sae_dir / f"seed{s}").mkdir(parents=True)
        (sae_dir / f"seed{s}" / "metrics.json").write_text(
            '{"sae": {"arch": "topk", "num_latents": 400, "k": 2}, "tokens_seen": 1024, "fvu": 0.3, "l0": 2.0, "dead_fraction": 0.0}')
    (sae_dir / "matches").mkdir()
    tables = []
    for a, b in ((0, 1), (0, 2), (1, 2)):
        enc, dec = two_modes(n, seed=10 * a + b), one_mode(n, seed=10 * a + b)
        t = pd.DataFrame({"latent": np.arange(n), "enc_partner": np.arange(n), "enc_cos": enc.astype(np.float32),
                          "dec_partner": np.arange(n), "dec_cos": dec.astype(np.float32), "enc_maxcos": enc.astype(np.float32),
                          "dec_maxcos": dec.astype(np.float32), "shared": (enc >= 0.7) & (dec >= 0.7)})
        t.to_parquet(sae_dir / "matches" / f"seed{a}-seed{b}.parquet")
        tables.append(t)
    zero = {"shared_paper": 0.0, "shared_notebook": 0.0, "shared_maxcos": 0.0}
    (sae_dir / "chance.json").write_text(pd.Series({"init": zero, "random": zero}).to_json())
    (sae_dir / "orphans").mkdir()
    pd.DataFrame({"size": [2] * 6 + [3] * 3, "base": [0, 1, 0, 2, 1, 2, 0, 1, 2],
                  "members": ["0,1"] * 2 + ["0,2"] * 2 + ["1,2"] * 2 + ["0,1,2"] * 3,
                  "only_in_base": [0.5, 0.4, 0.45, 0.5, 0.4, 0.42, 0.3, 0.32, 0.31]}).to_parquet(sae_dir / "orphans" / "subsets.parquet")
    (sae_dir / "consistency").mkdir()
    pd.DataFrame({"a": [0, 0, 1], "b": [1, 2, 2], "pwmcc": [0.5, 0.6, 0.7], "certified": True}).to_parquet(
        sae_dir / "consistency" / "pwmcc.parquet")
    row = summarize_sae(sae_dir, [0, 1, 2], 0.7)
    expected = np.mean([sarle_bc(t["dec_cos"].to_numpy()) for t in tables])
    assert row["dec_sarle_bc"] == pytest.approx(expected)
    assert row["enc_ashman_d"] > ASHMAN_CLEAN > row["dec_ashman_d"]
    assert "| BC dec | D dec |" in to_markdown(pd.DataFrame([row]))
