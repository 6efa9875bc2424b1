"""Fig. X1 (beyond the paper): on synthetic sites, how many true features seeds recover, and what orphans are.

Three panels per synthetic (site, sae): (a) fraction of true features recovered by one seed and by
the union of n seeds; (b) recovery against the true firing frequency; (c) latents grouped by how many
other seeds share them, split into true features and spurious latents (group 0 = the paper's orphans).
Like `saeseeds.figures.paper`, the chart embeds pre-aggregated tables only, and takes its style from there.
"""

from __future__ import annotations

import math

import altair as alt
import numpy as np
import pandas as pd

from saeseeds.figures.style import FigureStyle, ordered_labels, apply_style, require_columns
from saeseeds.synthetic.recovery import cross_table

TRUE, SPURIOUS = "true feature", "spurious"
FREQUENCY_BINS = 10


def union_curve(union: pd.DataFrame) -> pd.DataFrame:
    """Returns per (label, size): mean, min and max fraction of true features recovered by a subset of that size."""
    require_columns(union, ["label", "size", "members", "recovered_fraction"], "union")
    g = union.groupby(["label", "size"], sort=False)["recovered_fraction"]
    return pd.DataFrame({"mean": g.mean(), "lo": g.min(), "hi": g.max()}).reset_index()


def frequency_bins(features: pd.DataFrame, bins: int = FREQUENCY_BINS) -> pd.DataFrame:
    """Returns per (label, log-frequency bin): features in it, mean fraction of seeds recovering them, and
    the fraction the union of all seeds recovers."""
    require_columns(features, ["label", "frequency", "fraction_of_seeds", "n_seeds"], "features")
    rows = []
    for label, f in features.groupby("label", sort=False):
        logf = np.log10(f["frequency"].to_numpy())
        edges = np.linspace(logf.min(), logf.max() + 1e-9, bins + 1)
        which = np.clip(np.digitize(logf, edges) - 1, 0, bins - 1)
        for b in range(bins):
            inside = which == b
            if inside.any():
                rows.append({"label": label, "frequency": 10 ** ((edges[b] + edges[b + 1]) / 2), "features": int(inside.sum()),
                             "one seed (mean)": float(f["fraction_of_seeds"].to_numpy()[inside].mean()),
                             "union of all seeds": float((f["n_seeds"].to_numpy()[inside] > 0).mean())})
    return pd.DataFrame(rows).melt(id_vars=["label", "frequency", "features"], var_name="recovered by", value_name="fraction")


def figX1_recovery(latents: pd.DataFrame, features: pd.DataFrame, union: pd.DataFrame, *, style: FigureStyle) -> alt.TopLevelMixin:
    """Returns Fig. X1: union recovery vs seeds, recovery vs true frequency, orphans split into true and spurious."""
    require_columns(latents, ["label", "seed", "n_shared", "recovered"], "latents")
    labels = ordered_labels(latents)
    curve, freq = union_curve(union), frequency_bins(features)
    crosses = []
    for label in labels:
        c = cross_table(latents[latents["label"] == label]).melt(
            id_vars=["n_shared", "latents", "true_fraction"], value_vars=["true_feature", "spurious"], var_name="kind", value_name="count")
        c["kind"] = c["kind"].map({"true_feature": TRUE, "spurious": SPURIOUS})
        c["order"] = (c["kind"] == SPURIOUS).astype(int)
        c["label"] = label
        crosses.append(c)
    cross = pd.concat(crosses, ignore_index=True)
    kind_color = alt.Color("kind:N", title=None, scale=alt.Scale(domain=[TRUE, SPURIOUS],
                           range=[style.agree_color, style.disagree_color]))
    w, h = style.panel_width, style.panel_height
    rows = []
    for label in labels:
        cu, fr, cr = curve[curve["label"] == label], freq[freq["label"] == label], cross[cross["label"] == label]
        n_seeds = int(cu["size"].max())
        x = alt.X("size:Q", title="Number of seeds in the union", scale=alt.Scale(domain=[1, n_seeds]), axis=alt.Axis(tickMinStep=1))
        y = alt.Y("mean:Q", title="True features recovered (fraction)", scale=alt.Scale(domain=[0, 1]))
        band = alt.Chart(cu).mark_area(opacity=style.band_opacity, color=style.label_colors[0]).encode(x=x, y="lo:Q", y2="hi:Q")
        line = alt.Chart(cu).mark_line(point=True, color=style.label_colors[0]).encode(
            x=x, y=y, tooltip=["size:Q", alt.Tooltip("mean:Q", format=".3f"), alt.Tooltip("lo:Q", format=".3f"), alt.Tooltip("hi:Q", format=".3f")])
        one, every = cu.loc[cu["size"] == 1, "mean"].iloc[0], cu.loc[cu["size"] == n_seeds, "mean"].iloc[0]
        a = alt.layer(band, line).properties(width=w, height=h, title=alt.TitleParams(
            "(a) Recovery by the union of seeds", subtitle=f"one seed {one:.1%}, all {n_seeds} seeds {every:.1%}; band: min-max over subsets",
            fontSize=style.header_size))
        lo, hi = fr["frequency"].min(), fr["frequency"].max()
        b = alt.Chart(fr).mark_line(point=True).encode(
            x=alt.X("frequency:Q", title="True firing frequency (log)", scale=alt.Scale(type="log", domain=[10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi))])),
            y=alt.Y("fraction:Q", title="Fraction recovered", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("recovered by:N", scale=alt.Scale(range=style.label_colors[:2])),
            tooltip=[alt.Tooltip("frequency:Q", format=".2e"), "features:Q", "recovered by:N", alt.Tooltip("fraction:Q", format=".3f")],
        ).properties(width=w, height=h, title=alt.TitleParams("(b) Recovery vs true frequency", subtitle="features binned by log frequency",
                                                              fontSize=style.header_size))
        orphans = cr[cr["n_shared"] == 0]
        orphan_note = (f"orphans (shared with no other seed): {orphans['true_fraction'].iloc[0]:.1%} are true features"
                       if len(orphans) else "no orphan latents")
        c = alt.Chart(cr).mark_bar().encode(
            x=alt.X("n_shared:O", title=f"Other seeds sharing the latent (of {n_seeds - 1})", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("count:Q", title="Latents (all seeds)"), color=kind_color, order=alt.Order("order:Q"),
            tooltip=["n_shared:O", "kind:N", "count:Q", alt.Tooltip("true_fraction:Q", format=".3f")],
        ).properties(width=w, height=h, title=alt.TitleParams("(c) What orphans are", subtitle=orphan_note, fontSize=style.header_size))
        rows.append(alt.hconcat(a, b, c, spacing=30).resolve_scale(color="independent").properties(
            title=alt.TitleParams(label, fontSize=style.header_size)))
    chart = alt.vconcat(*rows).properties(title=alt.TitleParams(
        "Ground truth: which true features do seeds recover, and are orphan latents real?",
        subtitle=["A latent recovers the true feature its decoder row is matched to (exact matching) when their cosine",
                  "is at least the threshold; a true feature is recovered by a set of seeds if any of them recovers it."]))
    return apply_style(chart, style)
