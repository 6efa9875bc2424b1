import itertools
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from saeseeds.figures.paper import (
    AGREE,
    DISAGREE,
    fig1_matched_cosine,
    fig2_only_in_base,
    fig3_firing,
)
from saeseeds.figures.style import load_style, read_labelled, save_chart
from saeseeds.stats.powerlaw import fit_only_in_base

STYLE_PATH = Path(__file__).resolve().parents[2] / "workflow" / "report" / "figure_style.json"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def style():
    return load_style(STYLE_PATH)


def matches_frame(label: str, n_latents: int = 300, seed: int = 0) -> pd.DataFrame:
    """A bimodal matches table like the paper's: high-cosine agreeing latents, low-cosine others."""
    rng = np.random.default_rng(seed)
    shared = rng.random(n_latents) < 0.4
    enc = np.where(shared, rng.uniform(0.75, 1.0, n_latents), rng.uniform(0.05, 0.6, n_latents))
    dec = np.clip(enc + rng.normal(0, 0.03, n_latents), 0, 1)
    latent = np.arange(n_latents)
    agree = shared | (rng.random(n_latents) < 0.3)
    return pd.DataFrame(
        {
            "label": label,
            "latent": latent,
            "enc_partner": latent,
            "enc_cos": enc,
            "dec_partner": np.where(agree, latent, (latent + 1) % n_latents),
            "dec_cos": dec,
            "enc_maxcos": enc,
            "dec_maxcos": dec,
            "shared": agree & (enc >= 0.7) & (dec >= 0.7),
        }
    )


def subsets_frame(label: str, n_seeds: int) -> pd.DataFrame:
    rows = []
    for size in range(2, n_seeds + 1):
        for members in itertools.combinations(range(n_seeds), size):
            for base in members:
                rows.append((label, size, base, list(members), 0.5 * size**-0.7 + 0.3 + 0.01 * (base % 2)))
    return pd.DataFrame(rows, columns=["label", "size", "base", "members", "only_in_base"])


def latents_frame(label: str, n_seeds: int, n_latents: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for base in range(n_seeds):
        n_shared = rng.integers(0, n_seeds, n_latents)
        freq = 10.0 ** (-4 + 0.3 * n_shared + rng.normal(0, 0.3, n_latents))
        freq[:3] = 0.0  # dead latents
        frames.append(pd.DataFrame({"label": label, "base": base, "latent": np.arange(n_latents),
                                    "n_shared": n_shared, "firing_frequency": np.clip(freq, 0, 1)}))
    return pd.concat(frames, ignore_index=True)


def datasets(chart) -> list[pd.DataFrame]:
    return [pd.DataFrame(rows) for rows in chart.to_dict()["datasets"].values()]


def assert_saved(html: Path, png: Path, must_contain: list[str]) -> None:
    text = html.read_text()
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, flags=re.IGNORECASE)
    assert "cdn.jsdelivr" not in text
    assert "vega-embed" in text  # the library itself is inlined
    for needle in must_contain:
        assert needle in text, needle
    data = png.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
    assert not [p.name for p in html.parent.iterdir() if p.name.startswith(".")], "temp files left behind"


def test_load_style_reads_the_repository_style(style):
    assert style.ppi > 0 and style.font
    assert len(style.label_colors) >= 2


def test_load_style_names_missing_unknown_and_bad_keys(tmp_path):
    raw = json.loads(STYLE_PATH.read_text())
    bad = tmp_path / "style.json"
    bad.write_text(json.dumps({k: v for k, v in raw.items() if k != "ppi"} | {"colour": "red"}))
    with pytest.raises(ValueError, match=r"missing keys \['ppi'\], unknown keys \['colour'\]"):
        load_style(bad)
    bad.write_text(json.dumps(raw | {"panel_width": "wide"}))
    with pytest.raises(ValueError, match="panel_width"):
        load_style(bad)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_style(tmp_path / "nope.json")


def test_read_labelled_adds_labels_in_order(tmp_path):
    for name in ("a", "b"):
        matches_frame(name, 5).drop(columns="label").to_parquet(tmp_path / f"{name}.parquet")
    frame = read_labelled([("site B", tmp_path / "b.parquet"), ("site A", tmp_path / "a.parquet")])
    assert frame.columns[0] == "label"
    assert frame["label"].tolist() == ["site B"] * 5 + ["site A"] * 5
    with pytest.raises(ValueError, match="repeated"):
        read_labelled([("x", tmp_path / "a.parquet"), ("x", tmp_path / "b.parquet")])


def test_fig1_histogram_counts_every_latent_by_agreement(style):
    matches = pd.concat([matches_frame("site A", seed=0), matches_frame("site B", 200, seed=1)])
    chart = fig1_matched_cosine(matches, threshold=0.7, style=style)
    hist = pd.concat([d for d in datasets(chart) if "agreement" in d.columns])
    for label, group in matches.groupby("label"):
        agree = int((group["enc_partner"] == group["dec_partner"]).sum())
        for matrix in ("encoder", "decoder"):
            rows = hist[(hist["label"] == label) & (hist["matrix"] == matrix)]
            assert rows["count"].sum() == len(group)
            assert rows.loc[rows["agreement"] == AGREE, "count"].sum() == agree
            assert rows.loc[rows["agreement"] == DISAGREE, "count"].sum() == len(group) - agree
            # Stacks start at zero and agreeing latents sit at the bottom of each bin.
            for _, stack in rows.groupby("lo"):
                assert stack["y0"].min() == 0 and stack["y1"].max() == stack["count"].sum()
    text = json.dumps(chart.to_dict())
    assert "threshold 0.7" in text and f"{matches_frame('site A')['shared'].mean():.1%} of latents shared" in text


def test_fig1_saves_self_contained_html_and_png(style, tmp_path):
    chart = fig1_matched_cosine(matches_frame("pythia/pile/mlp6/topk"), threshold=0.7, style=style)
    save_chart(chart, tmp_path / "fig1.html", tmp_path / "fig1.png", ppi=72)
    assert_saved(tmp_path / "fig1.html", tmp_path / "fig1.png", ["pythia/pile/mlp6/topk", AGREE, "threshold 0.7"])


def test_fig1_rejects_missing_columns_and_bad_threshold(style):
    with pytest.raises(ValueError, match="dec_partner"):
        fig1_matched_cosine(matches_frame("a").drop(columns="dec_partner"), threshold=0.7, style=style)
    with pytest.raises(ValueError, match="threshold"):
        fig1_matched_cosine(matches_frame("a"), threshold=1.5, style=style)


def test_fig2_shows_fits_and_comparison_and_saves(style, tmp_path):
    subsets = pd.concat([subsets_frame("nine seeds", 9), subsets_frame("three seeds", 3)])
    fits = {"nine seeds": fit_only_in_base(subsets[subsets["label"] == "nine seeds"])}
    chart = fig2_only_in_base(subsets, fits, style=style, extrapolate_to=30)
    spec = json.dumps(chart.to_dict(), ensure_ascii=False)
    assert "F = " in spec and "descriptive, no p-value" in spec and "F-test p" not in spec and "ΔAIC" in spec
    assert f"c = {fits['nine seeds'].offset.params['c']:.3f}" in spec
    assert "three seeds: no power-law fit" in spec  # a label without a fit says so
    assert "paper: ~35% at 9 seeds" in spec
    curve = next(d for d in datasets(chart) if "mean" in d.columns and "label" in d.columns)
    nine = curve[curve["label"] == "nine seeds"].set_index("size")
    assert list(nine.index) == list(range(2, 10))
    assert nine.loc[9, "count"] == 9  # one subset, every member as base
    fit_rows = next(d for d in datasets(chart) if "fit" in d.columns)
    assert fit_rows["size"].max() == pytest.approx(30)
    save_chart(chart, tmp_path / "fig2.html", tmp_path / "fig2.png", ppi=72)
    assert_saved(tmp_path / "fig2.html", tmp_path / "fig2.png", ["nine seeds", "three seeds"])


def test_fig2_rejects_fits_for_unknown_labels(style):
    subsets = subsets_frame("a", 5)
    with pytest.raises(ValueError, match="not in subsets"):
        fig2_only_in_base(subsets, {"b": fit_only_in_base(subsets)}, style=style)


def test_fig3_box_statistics_and_save(style, tmp_path):
    latents = pd.concat([latents_frame("site A", 4), latents_frame("site B", 4, seed=1)])
    chart = fig3_firing(latents, base=0, style=style)
    stats = pd.concat([d for d in datasets(chart) if "median" in d.columns])
    for label in ("site A", "site B"):
        rows = latents[(latents["label"] == label) & (latents["base"] == 0)]
        live = rows[rows["firing_frequency"] > 0]
        got = stats[stats["label"] == label].set_index("n_shared")
        for k, group in live.groupby("n_shared"):
            assert got.loc[k, "count"] == len(group)
            assert got.loc[k, "median"] == pytest.approx(10 ** np.median(np.log10(group["firing_frequency"])))
            assert got.loc[k, "whisker_lo"] <= got.loc[k, "q1"] <= got.loc[k, "median"] <= got.loc[k, "q3"]
    assert "3 latents that never fired are not shown" in json.dumps(chart.to_dict())
    save_chart(chart, tmp_path / "fig3.html", tmp_path / "fig3.png", ppi=72)
    assert_saved(tmp_path / "fig3.html", tmp_path / "fig3.png", ["site A", "whisker_hi"])


def test_fig3_rejects_unknown_base_and_out_of_range_counts(style):
    latents = latents_frame("a", 3)
    with pytest.raises(ValueError, match="base seed 7"):
        fig3_firing(latents, base=7, style=style)
    latents.loc[0, "n_shared"] = 3
    with pytest.raises(ValueError, match=r"0\.\.2"):
        fig3_firing(latents, base=0, style=style)


def test_fig3_with_every_set_left_out_says_so(style, tmp_path):
    """A study whose only full-seed sets are external ones with unknown firing: a figure with the reason, not a crash."""
    empty = latents_frame("a", 3).iloc[0:0]
    chart = fig3_firing(empty, base=0, style=style)
    save_chart(chart, tmp_path / "fig3.html", tmp_path / "fig3.png", ppi=72)
    assert "No SAE set with known firing frequencies" in (tmp_path / "fig3.html").read_text()
    assert (tmp_path / "fig3.png").read_bytes().startswith(PNG_SIGNATURE)


def test_save_chart_is_deterministic(style, tmp_path):
    chart = fig2_only_in_base(subsets_frame("a", 5), {}, style=style, paper_level=None)
    save_chart(chart, tmp_path / "one.html", tmp_path / "one.png", ppi=72)
    save_chart(chart, tmp_path / "two.html", tmp_path / "two.png", ppi=72)
    assert (tmp_path / "one.html").read_bytes() == (tmp_path / "two.html").read_bytes()
    assert (tmp_path / "one.png").read_bytes() == (tmp_path / "two.png").read_bytes()


def test_figure_html_is_altairs_inline_page_with_vegas_bundle_built_once_per_machine(style, tmp_path, monkeypatch):
    import vl_convert

    from saeseeds.figures import vega_bundle
    from saeseeds.figures.style import _render

    monkeypatch.setenv("SAESEEDS_CACHE", str(tmp_path / "cache"))
    vega_bundle.javascript_bundle.cache_clear()
    chart = fig1_matched_cosine(matches_frame("a"), threshold=0.7, style=style)
    assert _render(chart, "html", template=vega_bundle.InlineTemplate()) == _render(chart, "html", inline=True)
    path = vega_bundle.bundle_path()
    assert path.parent == tmp_path / "cache" / "vega" and path.stat().st_mode & 0o777 == 0o644
    kept = path.read_text()
    script = kept.split("\n", 1)[1]
    assert kept.startswith(vega_bundle.DIGEST_PREFIX) and "vegaEmbed" in script

    # A later process reads the bundle instead of building it.
    vega_bundle.javascript_bundle.cache_clear()
    built = vl_convert.javascript_bundle
    monkeypatch.setattr(vl_convert, "javascript_bundle", lambda **kw: pytest.fail("built again"))
    assert vega_bundle.javascript_bundle() == script
    # A kept bundle with one character changed is built again and rewritten, never used.
    monkeypatch.setattr(vl_convert, "javascript_bundle", built)
    vega_bundle.javascript_bundle.cache_clear()
    path.write_text(kept.replace("vegaEmbed", "vegaEmbeD", 1))
    assert vega_bundle.javascript_bundle() == script and path.read_text() == kept
    # A cache that cannot be written: every process builds its own, as before.
    monkeypatch.setenv("SAESEEDS_CACHE", str(path))  # a file, not a folder
    vega_bundle.javascript_bundle.cache_clear()
    assert vega_bundle.javascript_bundle() == script
    vega_bundle.javascript_bundle.cache_clear()
