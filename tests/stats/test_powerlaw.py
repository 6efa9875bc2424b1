import itertools
import json

import numpy as np
import pandas as pd
import pytest

from saeseeds.stats.powerlaw import (
    OFFSET,
    PLAIN,
    fit_only_in_base,
    fit_power_laws,
    only_in_base_curve,
)

N = np.arange(2, 10)  # 9 seeds, as in the paper


def test_recovers_plain_power_law_parameters():
    result = fit_power_laws(N, 0.9 * N**-0.4)
    assert result.plain.model == PLAIN
    assert result.plain.params["a"] == pytest.approx(0.9, rel=1e-6)
    assert result.plain.params["b"] == pytest.approx(0.4, rel=1e-6)
    assert result.plain.rss < 1e-20


def test_recovers_offset_power_law_parameters():
    result = fit_power_laws(N, 0.5 * N**-0.7 + 0.3)
    assert result.offset is not None and result.offset.model == OFFSET
    assert result.offset.params == pytest.approx({"a": 0.5, "b": 0.7, "c": 0.3}, rel=1e-5)
    # The plain model cannot bend towards a floor, so it leaves a visible residual.
    assert result.plain.rss > 1e-5


def test_recovers_offset_parameters_with_noise_within_standard_errors():
    rng = np.random.default_rng(1)
    y = 0.5 * N**-0.7 + 0.3 + rng.normal(0, 0.002, N.size)
    fit = fit_power_laws(N, y).offset
    for name, true in {"a": 0.5, "b": 0.7, "c": 0.3}.items():
        assert abs(fit.params[name] - true) < 4 * fit.stderr[name], (name, fit.params, fit.stderr)


def test_f_test_prefers_offset_when_the_data_has_one():
    rng = np.random.default_rng(2)
    y = 0.6 * N**-0.8 + 0.3 + rng.normal(0, 0.003, N.size)
    result = fit_power_laws(N, y)
    assert result.f_pvalue < 0.01
    assert result.delta_aic < -4 and result.delta_bic < -4


def test_f_test_does_not_prefer_offset_when_the_data_has_none():
    # The same noise level as above, so only the shape of the curve differs between the two tests.
    pvalues = []
    for seed in range(5):
        rng = np.random.default_rng(100 + seed)
        y = 0.9 * N**-0.4 + rng.normal(0, 0.003, N.size)
        result = fit_power_laws(N, y)
        assert result.offset.rss <= result.plain.rss
        pvalues.append(result.f_pvalue)
    assert np.median(pvalues) > 0.1, pvalues


def test_result_is_strict_json_and_deterministic():
    y = 0.5 * N**-0.7 + 0.3 + np.linspace(0, 1e-3, N.size)
    text = fit_power_laws(N, y).to_json()
    parsed = json.loads(text)
    assert parsed["weighting"] == "unweighted"
    assert set(parsed["offset"]["params"]) == {"a", "b", "c"}
    assert 0 <= parsed["f_pvalue"] <= 1
    assert fit_power_laws(N, y).to_json() == text


def test_three_points_fit_the_plain_model_only():
    result = fit_power_laws([2, 3, 4], [0.6, 0.5, 0.45])
    assert result.offset is None
    assert "at least 4" in result.offset_skipped
    assert result.f_pvalue is None and result.delta_aic is None
    json.dumps(result.to_dict(), allow_nan=False)


def test_fewer_than_three_points_is_an_error():
    with pytest.raises(ValueError, match="at least 3 points"):
        fit_power_laws([2, 3], [0.6, 0.5])


def test_constant_y_skips_the_offset_model():
    result = fit_power_laws(N, np.full(N.size, 1.0))
    assert result.plain.params == {"a": 1.0, "b": 0.0}
    assert result.offset is None and "constant" in result.offset_skipped
    json.dumps(result.to_dict(), allow_nan=False)


@pytest.mark.parametrize(
    "n, y, message",
    [
        ([2, 3, 3, 4], [0.5, 0.4, 0.4, 0.3], "repeat"),
        ([2, 3, 4, 5], [0.5, np.nan, 0.4, 0.3], "finite"),
        ([0, 3, 4, 5], [0.5, 0.4, 0.4, 0.3], "positive"),
        ([2, 3, 4, 5], [0.5, -0.1, 0.4, 0.3], "non-negative"),
        ([2, 3, 4, 5], [0.5, 0.4, 0.3], "equal length"),
    ],
)
def test_bad_inputs_fail_naming_the_problem(n, y, message):
    with pytest.raises(ValueError, match=message):
        fit_power_laws(n, y)


def _subsets(n_seeds: int, value) -> pd.DataFrame:
    rows = []
    for size in range(2, n_seeds + 1):
        for members in itertools.combinations(range(n_seeds), size):
            for base in members:
                rows.append((size, base, list(members), value(size, base)))
    return pd.DataFrame(rows, columns=["size", "base", "members", "only_in_base"])


def test_curve_weights_every_subset_and_base_equally():
    subsets = _subsets(4, lambda size, base: 0.1 * base + 1 / size)
    curve = only_in_base_curve(subsets).set_index("size")
    # Every base appears equally often at each size, so the mean of 0.1 * base is 0.1 * 1.5.
    for size in (2, 3, 4):
        assert curve.loc[size, "mean"] == pytest.approx(0.15 + 1 / size)
        assert curve.loc[size, "min"] == pytest.approx(1 / size)
        assert curve.loc[size, "max"] == pytest.approx(0.3 + 1 / size)
    assert curve.loc[2, "count"] == 12 and curve.loc[4, "count"] == 4
    assert curve.loc[4, "std"] == pytest.approx(np.std([0.0, 0.1, 0.2, 0.3]))


def test_fit_only_in_base_fits_the_curve_of_means():
    subsets = _subsets(6, lambda size, base: 0.5 * size**-0.7 + 0.3)
    result = fit_only_in_base(subsets)
    assert result.n == [2, 3, 4, 5, 6]
    assert result.offset.params["c"] == pytest.approx(0.3, rel=1e-4)


def test_curve_rejects_missing_columns_and_bad_fractions():
    with pytest.raises(ValueError, match="only_in_base"):
        only_in_base_curve(pd.DataFrame({"size": [2]}))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        only_in_base_curve(pd.DataFrame({"size": [2], "only_in_base": [1.5]}))
