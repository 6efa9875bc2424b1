"""The synthetic activation source: its statistics match its parameters, and it honours the store contract."""

import numpy as np
import pytest

from saeseeds.activations.store import open_store
from saeseeds.synthetic.generator import (
    Generator,
    SyntheticConfig,
    SyntheticError,
    firing_probabilities,
    load_ground_truth,
    write_synthetic_store,
)

ROWS = 40_000


def binomial_ok(observed, p, rows, sigmas=5.0):
    """True where an observed frequency is within `sigmas` binomial standard errors (plus a hair) of p."""
    return np.abs(observed - p) <= sigmas * np.sqrt(p * (1 - p) / rows) + 1e-4


def test_frequencies_magnitudes_and_noise_match_the_parameters():
    cfg = SyntheticConfig(d=16, n_true=48, mean_active=3.0, zipf_exponent=1.2, magnitude_mean=1.5,
                          magnitude_std=0.3, noise_std=0.05, seed=11)
    gen = Generator(cfg)
    coef, x = gen.sample(ROWS)
    f = gen.truth.dictionary
    assert f.shape == (48, 16)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1, atol=1e-6)
    p = gen.truth.frequency
    assert p.sum() == pytest.approx(3.0) and np.all(np.diff(p) < 0)
    assert p[0] / p[9] == pytest.approx(10**1.2)  # Zipf: rank 1 vs rank 10
    active = coef > 0
    assert binomial_ok(active.mean(axis=0), p, ROWS).all()
    assert active.sum(axis=1).mean() == pytest.approx(3.0, abs=0.05)
    assert coef.min() >= 0
    assert coef[active].mean() == pytest.approx(1.5, abs=0.01)
    assert coef[active].std() == pytest.approx(0.3, abs=0.01)
    noise = x - coef @ f
    assert noise.mean() == pytest.approx(0, abs=2e-3)
    assert noise.std() == pytest.approx(0.05, rel=0.01)


def test_correlated_groups_cofire_and_keep_their_frequencies():
    cfg = SyntheticConfig(d=8, n_true=16, mean_active=2.0, zipf_exponent=0.0, correlation=0.8,
                          correlation_group=4, seed=2)
    gen = Generator(cfg)
    active = gen.coefficients(ROWS) > 0
    p = gen.truth.frequency
    assert binomial_ok(active.mean(axis=0), p, ROWS).all()
    assert gen.truth.group.tolist() == [i // 4 for i in range(16)]
    both_same_group = (active[:, 0] & active[:, 1]).mean()
    both_other_group = (active[:, 0] & active[:, 4]).mean()
    assert both_same_group > 3 * p[0] * p[1]
    assert both_other_group == pytest.approx(p[0] * p[4], abs=5 * np.sqrt(p[0] * p[4] / ROWS))


def test_children_fire_only_with_their_parent():
    cfg = SyntheticConfig(d=8, n_true=20, mean_active=2.0, zipf_exponent=1.0, hierarchy_parents=3,
                          children_per_parent=2, seed=5)
    gen = Generator(cfg)
    active = gen.coefficients(ROWS) > 0
    parent = gen.truth.parent
    assert parent.tolist()[:9] == [-1, -1, -1, 0, 1, 2, 0, 1, 2]
    assert (parent[9:] == -1).all()
    for child in np.flatnonzero(parent >= 0):
        assert not (active[:, child] & ~active[:, parent[child]]).any()
        assert active[:, child].any()
    assert binomial_ok(active.mean(axis=0), gen.truth.frequency, ROWS).all()


def test_orthogonal_dictionary_is_orthonormal():
    f = Generator(SyntheticConfig(d=12, n_true=10, mean_active=1.0, orthogonal=True)).truth.dictionary
    np.testing.assert_allclose(f @ f.T, np.eye(10), atol=1e-5)


def test_store_contract_ground_truth_and_determinism(tmp_path):
    cfg = SyntheticConfig(d=8, n_true=24, mean_active=2.0, noise_std=0.01, seed=4)
    stores = []
    for run in ("a", "b"):
        stores.append(write_synthetic_store(tmp_path / run / "activations.zarr", tmp_path / run / "truth.npz", cfg,
                                            n_tokens=10_000, n_heldout=1_000, attrs={"hook": "x"}))
    store = open_store(tmp_path / "a" / "activations.zarr")
    assert (store.n_train, store.n_heldout, store.d_in) == (9_000, 1_000, 8)
    assert store.array.dtype == np.float16 and store.attrs["hook"] == "x"
    assert store.attrs["synthetic"]["n_true"] == 24
    assert store.attrs["rows_sha256"] == stores[1].attrs["rows_sha256"]
    np.testing.assert_array_equal(store.array[:], stores[1].array[:])
    truth, empirical = load_ground_truth(tmp_path / "a" / "truth.npz")
    np.testing.assert_array_equal(truth.dictionary, Generator(cfg).truth.dictionary)
    assert binomial_ok(empirical, truth.frequency, 10_000).all()
    assert store.attrs["mean_active_observed"] == pytest.approx(empirical.sum())


@pytest.mark.parametrize(
    "change, key",
    [
        ({"orthogonal": True, "n_true": 20}, "orthogonal"),
        ({"mean_active": 40.0}, "mean_active"),
        ({"correlation": 1.0}, "correlation"),
        ({"hierarchy_parents": 4}, "hierarchy_parents"),
        ({"hierarchy_parents": 4, "children_per_parent": 5}, "children_per_parent"),
        ({"d": 0}, "synthetic.d"),
        ({"noise_std": -1.0}, "noise_std"),
    ],
)
def test_bad_parameters_fail_naming_the_key(change, key):
    with pytest.raises(SyntheticError, match=key):
        SyntheticConfig(**{"d": 8, "n_true": 16, "mean_active": 2.0, **change})


def test_unknown_key_is_rejected():
    with pytest.raises(SyntheticError, match="noise_sd"):
        SyntheticConfig.from_dict({"d": 8, "n_true": 16, "mean_active": 2.0, "noise_sd": 0.1})


def test_firing_probabilities_sum_to_mean_active():
    p = firing_probabilities(100, 0.7, 5.0)
    assert p.sum() == pytest.approx(5.0) and p[0] > p[-1]


def default_study():
    import yaml

    from saeseeds.config import study
    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    return study.validate_schema(yaml.safe_load((root / "config" / "config.yaml").read_text()))


def synthetic_site(config):
    """Index of the default study's synthetic site entry."""
    return next(i for i, s in enumerate(config["sites"]) if config["models"][s["model"]]["source"] == "synthetic")


def test_default_study_has_a_valid_synthetic_site():
    from saeseeds.plan import estimates
    from saeseeds.config.synthetic import check as check_config

    config = default_study()
    check_config(config)
    synthetic = [n for n, m in config["models"].items() if m["source"] == "synthetic"]
    assert synthetic and estimates.d_model(config, synthetic[0]) == config["models"][synthetic[0]]["synthetic"]["d"]


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c, m: c["models"][m]["synthetic"].update(orthogonal=True), "models.MODEL.synthetic"),
        (lambda c, m: c["models"][m].pop("synthetic"), "models.MODEL.synthetic"),
        (lambda c, m: c["models"]["smollm2-135m"].update(synthetic={"d": 4, "n_true": 4, "mean_active": 1}),
         "models.smollm2-135m.synthetic"),
        (lambda c, m: c["sites"][synthetic_site(c)].update(dataset="kjv-pydoc"), "sites.SITE"),
    ],
)
def test_synthetic_config_errors_name_the_key(edit, key):
    from saeseeds.config.study import ConfigError
    from saeseeds.config.synthetic import check as check_config

    config = default_study()
    site = synthetic_site(config)
    model = config["sites"][site]["model"]
    edit(config, model)
    with pytest.raises(ConfigError, match=key.replace("MODEL", model).replace("SITE", str(site))):
        check_config(config)


def test_schema_rejects_unknown_synthetic_key():
    from saeseeds.config.study import ConfigError, validate_schema

    config = default_study()
    config["models"][config["sites"][synthetic_site(config)]["model"]]["synthetic"]["noise_sd"] = 0.1
    with pytest.raises(ConfigError, match="synthetic"):
        validate_schema(config)


def test_float16_overflow_names_the_dtype_key(tmp_path):
    cfg = SyntheticConfig(d=4, n_true=4, mean_active=1.0, magnitude_mean=1e5, magnitude_std=0.0)
    with pytest.raises(SyntheticError, match="activations.dtype"):
        write_synthetic_store(tmp_path / "a.zarr", tmp_path / "t.npz", cfg, n_tokens=100, n_heldout=10)
