"""Fig X2: consistency over training (checkpoints of one run) next to the token ablation (separate runs).

The two differ by design: a checkpoint at T tokens is the run's weights partway through its schedule
(learning rate still well above zero), while each separate run decays its learning rate to zero at its
own budget. The figure puts both on one token axis so the reader sees what that difference costs.
"""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from saeseeds.figures.style import FigureStyle, apply_style, require_columns
from saeseeds.figures.ablations import PANELS, ablation_panels
from saeseeds.stats.trajectory import COLUMNS

ONE_RUN = "checkpoints of one run"
SEPARATE = "separate runs (lr to 0 at each budget)"


def separate_runs(summary: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Returns the token ablation of Fig 4 (the baseline and the variants that differ from it only in training
    tokens), one row per variant with tokens and the shared fraction; empty when the study has none."""
    if summary.empty or baseline not in set(summary["sae"]):
        return pd.DataFrame(columns=["label", "sae", "tokens", "y", "lo", "hi"])
    panels = ablation_panels(summary, baseline)
    rows = panels[panels["panel"] == PANELS["train_tokens"]] if len(panels) else panels
    if rows.empty:
        return pd.DataFrame(columns=["label", "sae", "tokens", "y", "lo", "hi"])
    return pd.DataFrame({"label": f"{rows['site'].iloc[0]}/{baseline}: " + SEPARATE, "sae": rows["sae"], "tokens": rows["train_tokens"],
                         "y": rows["shared_paper_mean"], "lo": rows["shared_paper_ci_lo"], "hi": rows["shared_paper_ci_hi"]}).sort_values("tokens")


def fig_x2_trajectory(trajectories: pd.DataFrame, separate: pd.DataFrame, *, style: FigureStyle) -> alt.TopLevelMixin:
    """Returns Fig X2: (a) shared fraction vs tokens seen, (b) mean matched decoder |cos| vs tokens seen, one line per
    SAE set with checkpoints (`trajectories`: trajectory tables with a `label` column), plus the separate runs in (a)."""
    require_columns(trajectories, ["label"] + COLUMNS, "trajectory")
    labels = list(dict.fromkeys(trajectories["label"])) + list(dict.fromkeys(separate["label"]))
    if len(labels) > len(style.label_colors):
        raise ValueError(f"figure style has {len(style.label_colors)} label_colors for {len(labels)} lines")
    color = alt.Color("label:N", title=None, sort=labels, scale=alt.Scale(domain=labels, range=style.label_colors[: len(labels)]),
                      legend=alt.Legend(orient="bottom", direction="vertical", labelLimit=600))
    tokens = pd.concat([trajectories["tokens"], separate["tokens"]]).astype(float)
    x = alt.X("tokens:Q", title="training tokens seen", axis=alt.Axis(format="~s", labelOverlap="greedy"),
              scale=alt.Scale(type="log", domain=[tokens.min() / 1.3, tokens.max() * 1.3]))
    one = trajectories.assign(kind=ONE_RUN, y=trajectories["shared_paper_mean"])
    highest = pd.concat([one["y"], separate["hi"]]).astype(float).max()
    top = min(1.0, max(0.05, math.ceil(highest * 12) / 10))  # from 0, with headroom, as Figs 4 and 5
    tip = [alt.Tooltip("label:N"), alt.Tooltip("step:Q"), alt.Tooltip("tokens:Q", format=","), alt.Tooltip("pairs:Q"),
           alt.Tooltip("shared_paper_mean:Q", format=".3f", title="shared"), alt.Tooltip("mean_matched_dec_cos:Q", format=".3f")]
    y_shared = alt.Y("y:Q", title="Fraction of latents shared (paper)", scale=alt.Scale(domain=[0, top]))
    line = alt.Chart(one).mark_line(point=alt.OverlayMarkDef(size=45, filled=True)).encode(x=x, y=y_shared, color=color, tooltip=tip)
    layers = [line]
    if len(separate):
        base = alt.Chart(separate)
        sep_tip = [alt.Tooltip("sae:N"), alt.Tooltip("tokens:Q", format=","), alt.Tooltip("y:Q", format=".3f", title="shared")]
        layers += [base.mark_line(strokeDash=[4, 3]).encode(x=x, y=y_shared, color=color),
                   base.mark_rule(strokeWidth=1.5).encode(x=x, y="lo:Q", y2="hi:Q", color=color),
                   base.mark_point(shape="diamond", size=90, filled=True).encode(x=x, y=y_shared, color=color, tooltip=sep_tip)]
    shared = alt.layer(*layers).properties(width=style.panel_width, height=style.panel_height, title="(a) shared latents")
    dec = alt.Chart(trajectories).mark_line(point=alt.OverlayMarkDef(size=45, filled=True)).encode(
        x=x, y=alt.Y("mean_matched_dec_cos:Q", title="mean matched decoder |cos|", scale=alt.Scale(zero=False)), color=color, tooltip=tip,
    ).properties(width=style.panel_width, height=style.panel_height, title="(b) mean matched decoder |cos| (PW-MCC-like)")
    subtitle = "lines: checkpoints of one run (mean over seed pairs; last point = the final checkpoint)"
    if len(separate):
        subtitle += "; diamonds: separate runs, bars: 95% bootstrap interval over latents"
    chart = alt.hconcat(shared, dec).resolve_scale(color="shared")
    return apply_style(chart.properties(title=alt.TitleParams("Fig X2. Consistency over training", subtitle=subtitle)), style)
