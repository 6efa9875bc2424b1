"""Figs A2 and A3: matched cosine vs max cosine per latent, for the encoder (A2) and the decoder (A3).

A latent on the diagonal got its best partner from the matching; below it, the one-to-one constraint
gave its best partner to another latent. Drawn as a 2-D histogram (counts per cell) so the HTML stays
small at 131K latents.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from saeseeds.figures.style import FigureStyle, apply_style, require_columns

SIDES = {"enc": ("A2", "encoder"), "dec": ("A3", "decoder")}


def cosine_grid(matches: pd.DataFrame, side: str, bin_width: float) -> pd.DataFrame:
    """Returns the 2-D histogram of (matched cos, max cos) of one side: one row per non-empty cell."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {list(SIDES)}, got {side!r}")
    require_columns(matches, [f"{side}_cos", f"{side}_maxcos"], "matches")
    matched = matches[f"{side}_cos"].to_numpy(dtype=float)
    best = matches[f"{side}_maxcos"].to_numpy(dtype=float)
    edges = np.arange(-1.0, 1.0 + bin_width / 2, bin_width)
    counts, _, _ = np.histogram2d(matched, best, bins=[edges, edges])
    i, j = np.nonzero(counts)
    return pd.DataFrame({"x0": edges[i], "x1": edges[i + 1], "y0": edges[j], "y1": edges[j + 1], "count": counts[i, j].astype(int)})


def fig_matched_vs_max(matches: pd.DataFrame, *, side: str, label: str, threshold: float, style: FigureStyle) -> alt.TopLevelMixin:
    """Returns Fig A2 (side 'enc') or A3 (side 'dec') for one pair of seeds of the SAE `label`."""
    grid = cosine_grid(matches, side, style.cosine_bin_width)
    number, name = SIDES[side]
    matched, best = matches[f"{side}_cos"].to_numpy(), matches[f"{side}_maxcos"].to_numpy()
    on_diagonal = float(np.mean(np.isclose(matched, best, atol=1e-6)))
    lo = float(min(grid["x0"].min(), grid["y0"].min()))
    scale = alt.Scale(domain=[lo, 1.0])
    cells = alt.Chart(grid).mark_rect().encode(
        x=alt.X("x0:Q", title=f"matched {name} cosine", scale=scale), x2="x1:Q",
        y=alt.Y("y0:Q", title=f"max {name} cosine", scale=scale), y2="y1:Q",
        color=alt.Color("count:Q", title="latents", scale=alt.Scale(type="log", scheme=style.n_shared_scheme)),
        tooltip=[alt.Tooltip("x0:Q", format=".2f", title="matched from"), alt.Tooltip("y0:Q", format=".2f", title="max from"), "count:Q"],
    )
    diagonal = alt.Chart(pd.DataFrame({"a": [lo, 1.0]})).mark_line(color=style.threshold_color, strokeDash=[4, 3]).encode(x="a:Q", y="a:Q")
    rules = pd.DataFrame({"t": [threshold]})
    vline = alt.Chart(rules).mark_rule(color=style.threshold_color, strokeDash=[2, 2]).encode(x="t:Q")
    hline = alt.Chart(rules).mark_rule(color=style.threshold_color, strokeDash=[2, 2]).encode(y="t:Q")
    chart = alt.layer(cells, diagonal, vline, hline).properties(width=style.panel_height * 1.4, height=style.panel_height * 1.4)
    return apply_style(chart.properties(title=alt.TitleParams(
        f"Fig {number}. Matched vs max {name} cosine per latent",
        subtitle=f"{label}; {on_diagonal:.1%} of latents matched to their best partner; dashed: threshold {threshold}")), style)
