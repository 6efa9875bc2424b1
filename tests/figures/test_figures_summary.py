"""Figs 4, 5, A1 (from the summary table) and A2/A3 (cosine grids): placement logic and rendering."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from saeseeds.figures.style import load_style, save_chart
from saeseeds.figures.cosines import cosine_grid, fig_matched_vs_max
from saeseeds.figures.ablations import ablation_panels, fig4_ablations, fig5_layers, fig_a1_labellings, layer_rows
from saeseeds.stats.summary import hook_position

STYLE_PATH = Path(__file__).resolve().parents[2] / "workflow" / "report" / "figure_style.json"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def style():
    return load_style(STYLE_PATH)


def row(site, sae, arch="topk", n=576, k=8, tokens=1_000_000, shared=0.3):
    model, dataset, hook = site.split("/")
    layer, stream = hook_position(hook)
    return {
        "site": site, "model": model, "dataset": dataset, "hook": hook, "layer": layer, "stream": stream, "sae": sae,
        "arch": arch, "num_latents": n, "k": k if arch in ("topk", "batchtopk") else None, "train_tokens": tokens,
        "shared_paper_mean": shared, "shared_paper_ci_lo": shared - 0.02, "shared_paper_ci_hi": shared + 0.02,
        "shared_maxcos_mean": shared + 0.05, "shared_maxcos_ci_lo": shared + 0.03, "shared_maxcos_ci_hi": shared + 0.07,
        "chance_init_shared_paper": 0.0, "chance_random_shared_paper": 0.001, "chance_init_shared_maxcos": 0.0,
    }


MAIN = "m/d/layers.6.mlp"


@pytest.fixture
def summary():
    rows = [
        row(MAIN, "base"), row(MAIN, "big", n=1152, shared=0.2), row(MAIN, "k4", k=4, shared=0.4),
        row(MAIN, "short", tokens=500_000, shared=0.1), row(MAIN, "relu", arch="relu", shared=0.25),
        row(MAIN, "big-k4", n=1152, k=4),  # two changes, same arch: fits no panel
        row("m/d/layers.6", "base"), row("m/d/layers.2.mlp", "base", shared=0.5), row("m/d/layers.2", "base", shared=0.45),
        row("other/d/h.3.mlp", "solo"),  # one hook only: no sweep
    ]
    frame = pd.DataFrame(rows)
    frame["layer"] = frame["layer"].astype("Int64")
    frame["k"] = frame["k"].astype("Int64")
    return frame


def test_hook_position():
    assert hook_position("layers.6.mlp") == (6, "mlp")
    assert hook_position("layers.10") == (10, "residual")
    assert hook_position("h.3") == (3, "residual")
    assert hook_position("embed") == (None, "embed")


def test_ablation_panels_place_each_variant_by_what_it_changes(summary):
    panels = ablation_panels(summary, "base")
    placed = {(p, s) for p, s in zip(panels["panel"], panels["sae"])}
    assert ("number of latents", "big") in placed and ("k (active latents)", "k4") in placed
    assert ("training tokens", "short") in placed and ("architecture", "relu") in placed
    assert not any(s == "big-k4" for _, s in placed)
    assert all(("base" in set(panels[panels["panel"] == p]["sae"])) for p in set(panels["panel"]))
    assert set(panels["site"]) == {MAIN}  # other sites are not ablations
    with pytest.raises(ValueError, match="baseline SAE 'nope'"):
        ablation_panels(summary, "nope")


def test_layer_rows_need_two_hooks(summary):
    rows = layer_rows(summary)
    assert set(rows["series"]) == {"m · base"}
    assert sorted(rows["layer"]) == [2, 2, 6, 6]


def test_figures_render(summary, style, tmp_path):
    charts = {
        "fig4": fig4_ablations(summary, baseline="base", style=style),
        "fig5": fig5_layers(summary, style=style),
        "figA1": fig_a1_labellings(summary, style=style),
        "fig4_empty": fig4_ablations(summary[summary["sae"] == "base"], baseline="base", style=style),
        "fig5_empty": fig5_layers(summary[summary["sae"] == "solo"], style=style),
    }
    for name, chart in charts.items():
        save_chart(chart, tmp_path / f"{name}.html", tmp_path / f"{name}.png", ppi=72)
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == PNG
    assert "chance: untrained SAEs" in (tmp_path / "fig4.html").read_text()


def test_cosine_grid_counts_every_latent_once(style, tmp_path):
    rng = np.random.default_rng(0)
    matched = rng.uniform(-0.2, 1, 500)
    matches = pd.DataFrame({"enc_cos": matched, "enc_maxcos": np.minimum(1, matched + rng.uniform(0, 0.3, 500)),
                            "dec_cos": matched, "dec_maxcos": matched})
    grid = cosine_grid(matches, "enc", 0.05)
    assert grid["count"].sum() == 500
    on_diagonal = cosine_grid(matches, "dec", 0.05)
    assert (on_diagonal["x0"] == on_diagonal["y0"]).all()
    chart = fig_matched_vs_max(matches, side="dec", label="x", threshold=0.7, style=style)
    save_chart(chart, tmp_path / "a3.html", tmp_path / "a3.png", ppi=72)
    assert "100.0% of latents matched to their best partner" in (tmp_path / "a3.html").read_text()
    with pytest.raises(ValueError, match="side"):
        cosine_grid(matches, "both", 0.05)


def test_a_sequence_batched_variant_gets_the_batch_order_panel(summary, style, tmp_path):
    summary["batch_order"] = "tokens"
    seq = pd.DataFrame([row(MAIN, "seqbatch", shared=0.35) | {"batch_order": "sequences"}])
    frame = pd.concat([summary, seq], ignore_index=True)
    panels = ablation_panels(frame, "base")
    order = panels[panels["panel"] == "batch order"].sort_values("order")
    assert list(order["sae"]) == ["base", "seqbatch"] and list(order["x_label"]) == ["tokens", "sequences"]
    assert not (panels[panels["panel"] != "batch order"]["sae"] == "seqbatch").any()
    # without the column (summaries written before it existed) the panel is absent and nothing else changes
    assert "batch order" not in set(ablation_panels(summary.drop(columns="batch_order"), "base")["panel"])
    save_chart(fig4_ablations(frame, baseline="base", style=style), tmp_path / "fig4.html", tmp_path / "fig4.png", ppi=72)
    assert (tmp_path / "fig4.png").read_bytes()[:8] == PNG
