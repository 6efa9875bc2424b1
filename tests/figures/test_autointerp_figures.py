"""Fig 6 and Table 1 from autointerp scores, and the autointerp config checks."""

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from saeseeds.config import autointerp as autointerp_config
from saeseeds.figures.autointerp import fig6_autointerp, table1, with_sharing, write_table1
from saeseeds.figures.style import load_style, save_chart
from saeseeds.config.study import ConfigError, validate_schema

ROOT = Path(__file__).resolve().parents[2]
LABEL = "m/d/h/sae"


def scores_frame():
    """Seed 0 latents 0-3 and their counterparts 10-13 in seed 1, at cosines 0.1, 0.4, 0.8, 0.95."""
    cos = [0.1, 0.4, 0.8, 0.95]
    a = pd.DataFrame({"label": LABEL, "seed": 0, "latent": [0, 1, 2, 3], "score": [0.5, 0.9, 0.7, np.nan],
                      "dec_cos": cos, "enc_cos": cos, "shared": [False, False, True, True],
                      "counterpart_seed": 1, "counterpart": [10, 11, 12, 13], "explanation": ["a0", "a1", "a2", None]})
    b = pd.DataFrame({"label": LABEL, "seed": 1, "latent": [10, 11, 12, 13], "score": [0.6, 0.5, 0.8, 0.75],
                      "dec_cos": cos, "enc_cos": cos, "shared": [False, False, True, True],
                      "counterpart_seed": 0, "counterpart": [0, 1, 2, 3], "explanation": ["b0", "b1", "b2", "b3"]})
    return pd.concat([a, b], ignore_index=True)


def orphans_frame():
    rows = [{"label": LABEL, "base": base, "latent": latent, "n_shared": n}
            for base, latents in ((0, range(4)), (1, range(10, 14))) for latent, n in zip(latents, [0, 0, 1, 2])]
    rows.append({"label": LABEL, "base": 2, "latent": 0, "n_shared": 0})  # a third seed: n_seeds = 3
    return pd.DataFrame(rows)


def test_with_sharing_adds_counts_and_names_missing_latents():
    frame = with_sharing(scores_frame(), orphans_frame())
    assert list(frame.n_shared) == [0, 0, 1, 2] * 2 and (frame.n_seeds == 3).all()
    with pytest.raises(ValueError, match="seed 1 latent 13 has a score but no orphans row"):
        with_sharing(scores_frame(), orphans_frame().iloc[:-2])


def test_table1_picks_the_best_scored_pairs_per_level(tmp_path):
    table = table1(scores_frame(), per_level=1)
    assert list(table.level) == ["[0.0, 0.3)", "[0.3, 0.5)", "[0.7, 0.9)", "[0.9, 1.0]"]
    assert list(table.latent_a) == [0, 1, 2, 3] and list(table.latent_b) == [10, 11, 12, 13]
    assert list(table.explanation_b) == ["b0", "b1", "b2", "b3"] and pd.isna(table.explanation_a.iloc[3])
    two = scores_frame()
    two.loc[two.latent == 1, "dec_cos"] = 0.15  # latents 0 and 1 now share the lowest level: the better mean first
    assert list(table1(two, per_level=1).latent_a[:1]) == [1]
    write_table1(table, tmp_path / "t.csv", tmp_path / "t.html")
    assert pd.read_csv(tmp_path / "t.csv").shape == (4, 13)
    assert "<table" in (tmp_path / "t.html").read_text()


def test_fig6_renders_png_and_offline_html(tmp_path):
    style = load_style(ROOT / "workflow/report/figure_style.json")
    chart = fig6_autointerp(with_sharing(scores_frame(), orphans_frame()), threshold=0.7, style=style)
    save_chart(chart, tmp_path / "f.html", tmp_path / "f.png", ppi=72)
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="no latent has a detection score"):
        fig6_autointerp(with_sharing(scores_frame().assign(score=np.nan), orphans_frame()), threshold=0.7, style=style)


def load(name):
    return validate_schema(yaml.safe_load((ROOT / "config" / name).read_text()))


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml", "paper.yaml"])
def test_shipped_configs_pass_the_autointerp_checks(name):
    config = load(name)
    autointerp_config.check(config)
    assert len(autointerp_config.site_saes_explained(config)) == 1


def test_autointerp_config_errors_name_the_key():
    base = load("smoke.yaml")
    cases = [
        ({"saes": ["nope"]}, "autointerp.saes': 'nope'"),
        ({"seeds": [0, 5]}, r"autointerp.seeds': \[0, 5\] are not both seeds"),
        ({"window": 24}, "autointerp.window': 24 does not divide the context length 64"),
        ({"sites": ["x/y/z"]}, "autointerp.sites': 'x/y/z'"),
    ]
    for change, message in cases:
        config = copy.deepcopy(base)
        config["autointerp"].update(change)
        with pytest.raises(ConfigError, match=message):
            autointerp_config.check(config)
    config = copy.deepcopy(base)
    config["autointerp"]["backend"] = {"kind": "openai", "model": "m"}
    with pytest.raises(ConfigError, match="autointerp.backend"):
        validate_schema(config)
        autointerp_config.check(config)
