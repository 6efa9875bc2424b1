"""The `functional` config section (saeseeds.config.functional), the summary columns and the figures of functional correspondence."""

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from saeseeds.config import functional as functional_config
from saeseeds.figures.style import load_style, save_chart
from saeseeds.figures.functional import fig_loss_recovered, fig_substitution, substitution_means
from saeseeds.stats.functional_columns import summary_columns
from saeseeds.config.study import ConfigError, validate_schema

ROOT = Path(__file__).resolve().parents[2]


def load(name):
    return validate_schema(yaml.safe_load((ROOT / "config" / name).read_text()))


def test_default_study_measures_the_main_set_and_every_ablation_at_layer_6_in_one_site_job():
    config = load("config.yaml")
    functional_config.check(config)
    measured = functional_config.site_saes_measured(config)
    assert {site.hook for site, _ in measured} == {"layers.6.mlp"}
    assert len(measured) == 9 and ("topk-1152-k4" in {sae for _, sae in measured})
    assert list(functional_config.by_site(config).values()) == [[sae for _, sae in measured]]
    assert sum(len(config["saes"][sae].get("seeds", config["seeds"])) for _, sae in measured) == 9 + 8 * 2
    assert functional_config.pair(config, "topk-1152-k4") == (0, 1)
    assert config["functional"]["model_latents"] == 4 and config["functional"]["model_contexts"] == 1  # schema defaults filled in
    assert [sae for _, sae in functional_config.model_site_saes(config)] == ["topk-1152-k4"]


def test_smoke_study_measures_one_variant_on_one_context():
    config = load("smoke.yaml")
    functional_config.check(config)
    assert [(s.path, sae) for s, sae in functional_config.site_saes_measured(config)] == [("smollm2-135m/kjv-pydoc/layers.2.mlp", "topk-256")]
    assert config["functional"]["contexts"] == 1


def test_functional_config_errors_name_the_key():
    base = load("smoke.yaml")
    cases = [
        ({"saes": ["nope"]}, "functional.saes': 'nope'"),
        ({"pair": [0, 5]}, r"functional.pair': \[0, 5\] are not two seeds"),
        ({"sites": ["x/y/z"]}, "functional.sites': 'x/y/z'"),
        ({"contexts": 33}, "functional.contexts': 33 exceeds the 32 held-out contexts"),
        ({"model_saes": ["topk-128"]}, "functional.model_saes': 'topk-128' is not one of"),
    ]
    for change, message in cases:
        config = copy.deepcopy(base)
        config["functional"].update(change)
        with pytest.raises(ConfigError, match=message):
            functional_config.check(config)
    assert functional_config.section({"x": 1}) is None and functional_config.site_saes_measured({"x": 1}) == []


def substitution_frame(n=40, seed=0):
    rng = np.random.default_rng(seed)
    shared = np.arange(n) < n // 2
    return pd.DataFrame({
        "label": "site/sae", "latent": np.arange(n), "dec_cos": np.where(shared, 0.9, 0.3) + rng.uniform(-0.05, 0.05, n),
        "shared": shared, "firing_rows": np.where(np.arange(n) == n - 1, 0, 10),
        "score_partner": np.where(shared, 0.8, 0.2), "score_random": -0.1, "score_nonpartner": 0.05,
    })


def test_substitution_means_by_kind_and_candidate_skip_latents_that_never_fire():
    means = substitution_means(substitution_frame()).set_index(["kind", "candidate"])
    assert means.loc[("shared", "partner"), "mean"] == pytest.approx(0.8)
    assert means.loc[("orphan", "partner"), "mean"] == pytest.approx(0.2)
    assert means.loc[("orphan", "partner"), "count"] == 19  # the last orphan never fires
    assert means.loc[("shared", "random latent"), "mean"] == pytest.approx(-0.1)
    assert "greedy" not in set(means.index.get_level_values("candidate"))  # a table without the other matchings
    frame = substitution_frame().assign(score_greedy=lambda f: np.where(f["shared"], 0.7, 0.1), score_sinkhorn=np.nan)
    means = substitution_means(frame).set_index(["kind", "candidate"])
    assert means.loc[("shared", "greedy"), "mean"] == pytest.approx(0.7) and means.loc[("orphan", "greedy"), "count"] == 19
    assert "Sinkhorn" not in set(means.index.get_level_values("candidate"))  # all NaN: did not apply
    assert summary_columns(LOSS, frame)["substitution_greedy"] == pytest.approx(0.4, abs=0.01)


LOSS = pd.DataFrame({"sae": "s", "seed": [0, 1], "ce_clean": 2.0, "ce_zero": 6.0, "ce_sae": [3.0, 4.0], "kl_zero": 3.0,
                     "kl_sae": [0.5, 1.5], "loss_recovered": [0.75, 0.5], "contexts": 1, "tokens": 63})


def test_summary_columns_average_seeds_and_split_shared_from_orphan():
    loss = LOSS
    cols = summary_columns(loss, substitution_frame())
    assert cols["loss_recovered"] == pytest.approx(0.625) and cols["loss_recovered_std"] == pytest.approx(0.125)
    assert cols["kl_sae"] == pytest.approx(1.0) and cols["ce_sae"] == pytest.approx(3.5) and cols["ce_zero"] == 6.0
    assert cols["substitution_shared"] == pytest.approx(0.8) and cols["substitution_orphan"] == pytest.approx(0.2)
    assert cols["substitution_random"] == pytest.approx(-0.1) and cols["substitution_nonpartner"] == pytest.approx(0.05)
    model = pd.DataFrame({"kl_sae": [0.1, 0.2, None], "score_partner": [1.0, 0.5, None], "score_random": [0.0, 0.2, None],
                          "score_nonpartner": [0.1, 0.3, None]})
    cols = summary_columns(loss, None, model)
    assert cols["model_latents"] == 2 and cols["model_substitution_partner"] == pytest.approx(0.75)
    assert "substitution_shared" not in cols


def test_functional_figures_render(tmp_path):
    style = load_style(ROOT / "workflow/report/figure_style.json")
    save_chart(fig_substitution(substitution_frame(), threshold=0.7, style=style), tmp_path / "f1.html", tmp_path / "f1.png", ppi=72)
    summary = pd.DataFrame({"site": "m/d/layers.6.mlp", "sae": ["a", "b", "c"], "seeds": [9, 2, 2], "shared_paper_mean": [0.2, 0.1, 0.3],
                            "loss_recovered": [0.9, 0.8, np.nan], "loss_recovered_std": [0.01, 0.02, np.nan]})
    save_chart(fig_loss_recovered(summary, style=style), tmp_path / "f2.html", tmp_path / "f2.png", ppi=72)
    for name in ("f1", "f2"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert "cdn.jsdelivr" not in (tmp_path / f"{name}.html").read_text()
    with pytest.raises(ValueError, match="no variant in the summary has loss recovered"):
        fig_loss_recovered(summary.assign(loss_recovered=np.nan), style=style)
