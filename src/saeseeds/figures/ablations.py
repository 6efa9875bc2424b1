"""Figures drawn from the summary table: Fig 4 (ablations), Fig 5 (layers) and Fig A1 (labellings).

Each point is a shared fraction (mean over the variant's seed pairs) with its 95% seed-level jackknife
interval (`saeseeds.stats.jackknife`; none for variants with 2 seeds) as an error bar, next to the two chance levels of `saeseeds.stats.chance` (grey marks): the
same seeds untrained, and the trained SAEs under a random matching.
"""

from __future__ import annotations

import math

import altair as alt
import numpy as np
import pandas as pd

from saeseeds.figures.style import FigureStyle, apply_style, message_chart, require_columns

TRAINED = "trained SAEs"
CHANCE_INIT = "chance: untrained SAEs"
CHANCE_RANDOM = "chance: random matching"
KIND_ORDER = [TRAINED, CHANCE_INIT, CHANCE_RANDOM]
PANELS = {"num_latents": "number of latents", "k": "k (active latents)", "train_tokens": "training tokens", "arch": "architecture",
          "batch_order": "batch order"}
OPTIONAL_FIELDS = ("batch_order",)
"""Summary columns a panel compares when the summary has them (summaries written before they existed lack them)."""
LABELLING_NAMES = {"paper": "Hungarian (paper)", "maxcos": "max-cos (no bijection)"}
SUMMARY_COLUMNS = ["site", "sae", "arch", "num_latents", "k", "train_tokens", "shared_paper_mean", "shared_paper_ci_lo",
                   "shared_paper_ci_hi", "chance_init_shared_paper", "chance_random_shared_paper"]


def ablation_panels(summary: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Returns the rows of Fig 4: each variant at the baseline's site placed in the panel of the one field
    (latents, k, training tokens, batch order) in which it differs from the baseline, or in the architecture panel when
    its architecture differs; the baseline appears in every panel. Variants that differ in several
    fields of the same architecture fit no panel and are left out.
    """
    require_columns(summary, SUMMARY_COLUMNS, "summary")
    rows = summary[summary["sae"] == baseline]
    if rows.empty:
        raise ValueError(f"baseline SAE {baseline!r} is not in the summary (variants: {sorted(summary['sae'].unique())})")
    base = rows.iloc[0]
    site_rows = summary[summary["site"] == base["site"]]
    fields = ("num_latents", "k", "train_tokens") + tuple(f for f in OPTIONAL_FIELDS if f in summary.columns)
    placed = []
    for _, row in site_rows.iterrows():
        diffs = [f for f in fields if not _same(row[f], base[f])]
        if row["sae"] == baseline:
            panels = [p for p in PANELS if p == "arch" or p in fields]
        elif row["arch"] != base["arch"]:
            panels = ["arch"]
        elif len(diffs) == 1:
            panels = diffs
        else:
            continue
        for panel in panels:
            placed.append(row.to_dict() | {"panel": PANELS[panel], "x_label": _x_label(panel, row), "order": _order(panel, row), "is_baseline": row["sae"] == baseline})
    frame = pd.DataFrame(placed)
    counts = frame.groupby("panel")["sae"].nunique()
    return frame[frame["panel"].map(counts) > 1].reset_index(drop=True)


def fig4_ablations(summary: pd.DataFrame, *, baseline: str, style: FigureStyle) -> alt.TopLevelMixin:
    """Returns Fig 4: shared fraction vs latents, k, training tokens and by architecture, at the baseline's site."""
    frame = ablation_panels(summary, baseline)
    if frame.empty:
        return message_chart(f"No ablation: no variant at the site of {baseline!r} differs from it in one of latents, k, tokens, batch order or architecture", style)
    long = _with_chance(frame, "shared_paper")
    x = alt.X("x_label:N", sort=alt.EncodingSortField("order", order="ascending"), title=None, axis=alt.Axis(labelAngle=-30, labelAlign="right"))
    chart = _points(long, x, style).properties(width=style.panel_width * 0.7, height=style.panel_height)
    faceted = chart.facet(column=alt.Column("panel:N", title=None, sort=[p for p in PANELS.values() if p in set(frame["panel"])]))
    site = frame["site"].iloc[0]
    return apply_style(faceted.resolve_scale(x="independent").properties(
        title=alt.TitleParams("Fig 4. Shared latents (2 seeds) across SAE variants",
                              subtitle=f"{site}; baseline {baseline}; bars: 95% seed jackknife interval (none with 2 seeds)")), style)


def layer_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """Returns the rows of Fig 5: (model, sae) groups trained at two or more hooks with a layer number."""
    require_columns(summary, SUMMARY_COLUMNS + ["model", "layer", "stream"], "summary")
    rows = summary[summary["layer"].notna()].copy()
    rows["layer"] = rows["layer"].astype(int)
    rows["series"] = rows["model"] + " · " + rows["sae"]
    hooks = rows.groupby("series")["site"].nunique()
    return rows[rows["series"].map(hooks) >= 2].reset_index(drop=True)


def fig5_layers(summary: pd.DataFrame, *, style: FigureStyle) -> alt.TopLevelMixin:
    """Returns Fig 5: shared fraction by layer, MLP output vs residual stream, one panel per model and SAE."""
    rows = layer_rows(summary)
    if rows.empty:
        return message_chart("No layer sweep: no SAE variant is trained at two or more layers of a model", style)
    trained = rows.assign(y=rows["shared_paper_mean"], lo=rows["shared_paper_ci_lo"], hi=rows["shared_paper_ci_hi"])
    x = alt.X("layer:Q", title="layer", axis=alt.Axis(tickMinStep=1))
    y = alt.Y("y:Q", title="Fraction of latents shared", scale=alt.Scale(domain=[0, _top(trained)]))
    color = alt.Color("stream:N", title="hook", scale=alt.Scale(range=style.label_colors))
    tooltip = [alt.Tooltip("site:N"), alt.Tooltip("sae:N"), alt.Tooltip("y:Q", format=".3f", title="shared"),
               alt.Tooltip("lo:Q", format=".3f"), alt.Tooltip("hi:Q", format=".3f")]
    base = alt.Chart(trained)
    line = base.mark_line(point=alt.OverlayMarkDef(size=45, filled=True)).encode(x=x, y=y, color=color, tooltip=tooltip)
    bars = base.mark_rule(strokeWidth=1.5).encode(x=x, y="lo:Q", y2="hi:Q", color=color)
    chance = base.mark_line(strokeDash=[4, 3], color=style.paper_color).encode(x=x, y="chance_init_shared_paper:Q", detail="stream:N")
    layered = alt.layer(chance, bars, line).properties(width=style.panel_width, height=style.panel_height)
    faceted = layered.facet(column=alt.Column("series:N", title=None), data=trained)
    return apply_style(faceted.properties(title=alt.TitleParams(
        "Fig 5. Shared latents (2 seeds) by layer",
        subtitle="bars: 95% seed jackknife interval (none with 2 seeds); dashed: untrained SAEs (chance)")), style)


def fig_a1_labellings(summary: pd.DataFrame, *, style: FigureStyle) -> alt.TopLevelMixin:
    """Returns Fig A1: shared fraction by Hungarian labelling vs by max-cos labelling, per site and SAE."""
    require_columns(summary, SUMMARY_COLUMNS + ["shared_maxcos_mean", "shared_maxcos_ci_lo", "shared_maxcos_ci_hi", "chance_init_shared_maxcos"], "summary")
    label = summary["site"] + "/" + summary["sae"]
    parts = []
    for key, name in LABELLING_NAMES.items():
        parts.append(pd.DataFrame({
            "label": label, "labelling": name, "y": summary[f"shared_{key}_mean"], "lo": summary[f"shared_{key}_ci_lo"],
            "hi": summary[f"shared_{key}_ci_hi"], "chance": summary[f"chance_init_shared_{key}"],
        }))
    frame = pd.concat(parts, ignore_index=True)
    order = list(dict.fromkeys(label))
    y = alt.Y("label:N", sort=order, title=None)
    x = alt.X("y:Q", title="Fraction of latents shared (2 seeds)", scale=alt.Scale(domain=[0, _top(frame)]))
    color = alt.Color("labelling:N", title="labelling", scale=alt.Scale(domain=list(LABELLING_NAMES.values()), range=style.label_colors[:2]))
    offset = alt.YOffset("labelling:N", sort=list(LABELLING_NAMES.values()))
    base = alt.Chart(frame)
    bar = base.mark_bar(opacity=0.85).encode(x=x, y=y, color=color, yOffset=offset,
                                             tooltip=["label:N", "labelling:N", alt.Tooltip("y:Q", format=".3f")])
    err = base.mark_rule(color="black").encode(x="lo:Q", x2="hi:Q", y=y, yOffset=offset)
    chance = base.mark_tick(color=style.paper_color, thickness=2).encode(x="chance:Q", y=y, yOffset=offset)
    height = max(style.panel_height, 26 * len(order))
    chart = alt.layer(bar, err, chance).properties(width=style.panel_width * 1.3, height=height)
    return apply_style(chart.properties(title=alt.TitleParams(
        "Fig A1. Shared latents by Hungarian vs max-cos labelling",
        subtitle="bars: 95% seed jackknife interval (none with 2 seeds); grey ticks: untrained SAEs (chance)")), style)


def _with_chance(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """Returns `frame` in long form: one row per (variant, kind) with y, lo, hi (chance rows without interval)."""
    trained = frame.assign(kind=TRAINED, y=frame[f"{key}_mean"], lo=frame[f"{key}_ci_lo"], hi=frame[f"{key}_ci_hi"])
    init = frame.assign(kind=CHANCE_INIT, y=frame[f"chance_init_{key}"], lo=np.nan, hi=np.nan)
    random = frame.assign(kind=CHANCE_RANDOM, y=frame[f"chance_random_{key}"], lo=np.nan, hi=np.nan)
    return pd.concat([trained, init, random], ignore_index=True)


def _points(long: pd.DataFrame, x: alt.X, style: FigureStyle) -> alt.LayerChart:
    y = alt.Y("y:Q", title="Fraction of latents shared", scale=alt.Scale(domain=[0, _top(long)]))
    color = alt.Color("kind:N", title=None, scale=alt.Scale(domain=KIND_ORDER, range=[style.label_colors[0], style.paper_color, "#BBBBBB"]))
    shape = alt.Shape("kind:N", title=None, scale=alt.Scale(domain=KIND_ORDER, range=["circle", "triangle-down", "cross"]))
    tooltip = [alt.Tooltip("sae:N"), alt.Tooltip("kind:N"), alt.Tooltip("y:Q", format=".3f", title="shared"),
               alt.Tooltip("lo:Q", format=".3f"), alt.Tooltip("hi:Q", format=".3f")]
    base = alt.Chart()
    points = base.mark_point(size=70, filled=True).encode(x=x, y=y, color=color, shape=shape, tooltip=tooltip)
    bars = base.mark_rule(strokeWidth=1.5, color=style.label_colors[0]).encode(x=x, y="lo:Q", y2="hi:Q").transform_filter(alt.datum.kind == TRAINED)
    return alt.layer(bars, points, data=long)


def _top(frame: pd.DataFrame) -> float:
    values = pd.concat([frame["y"], frame["hi"]]).dropna() if "hi" in frame else frame["y"]
    return float(min(1.0, max(0.05, math.ceil(values.max() * 12) / 10)))


def _same(a, b) -> bool:
    if pd.isna(a) or pd.isna(b):
        return bool(pd.isna(a) and pd.isna(b))
    return bool(a == b)


def _x_label(panel: str, row: pd.Series) -> str:
    value = row[panel]
    if panel in ("arch", "batch_order"):
        return str(value)
    if panel == "train_tokens":
        return f"{value / 1e6:.3g}M" if value >= 1e6 else f"{value / 1e3:.3g}K"
    return str(int(value))


ARCH_ORDER = ["topk", "batchtopk", "jumprelu", "relu", "gated"]


def _order(panel: str, row: pd.Series) -> float:
    if panel == "arch":
        return float(ARCH_ORDER.index(row["arch"])) if row["arch"] in ARCH_ORDER else float(len(ARCH_ORDER))
    if panel == "batch_order":
        return 0.0 if row[panel] == "tokens" else 1.0
    return float(row[panel])
