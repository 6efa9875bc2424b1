"""Figures of functional correspondence: substitution score against matched cosine (shared vs orphan latents,
with the controls), and loss recovered per SAE variant next to its shared fraction."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from saeseeds.figures.style import FigureStyle, apply_style, require_columns

SUBSTITUTION_FIGURE_COLUMNS = ["label", "latent", "dec_cos", "shared", "firing_rows", "score_partner", "score_random", "score_nonpartner"]
CANDIDATES = {"score_partner": "partner", "score_greedy": "greedy", "score_maxcos": "max-cos", "score_sinkhorn": "Sinkhorn",
              "score_nonpartner": "best non-partner", "score_random": "random latent"}
"""Candidate columns in the order drawn: the exact (Hungarian) partner, the other matchings' partners (where the
table has them: substitution tables of equal-size sets), then the two controls."""


def substitution_means(frame: pd.DataFrame) -> pd.DataFrame:
    """Returns per label, latent kind (shared / orphan) and candidate (partner and both controls) the mean
    substitution score of the latents that fire on held-out rows, with its standard error and count."""
    require_columns(frame, SUBSTITUTION_FIGURE_COLUMNS, "substitution")
    firing = frame[frame["firing_rows"] > 0].assign(kind=lambda f: np.where(f["shared"], "shared", "orphan"))
    rows = []
    for (label, kind), group in firing.groupby(["label", "kind"], sort=False):
        for column, candidate in CANDIDATES.items():
            if column not in group or group[column].isna().all():
                continue
            values = group[column].dropna().to_numpy(float)
            rows.append({"label": label, "kind": kind, "candidate": candidate, "count": len(values), "mean": float(values.mean()),
                         "sem": float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0})
    out = pd.DataFrame(rows)
    return out.assign(lo=out["mean"] - out["sem"], hi=out["mean"] + out["sem"])


def fig_substitution(frame: pd.DataFrame, *, threshold: float, style: FigureStyle, max_points: int = 3000) -> alt.TopLevelMixin:
    """Returns the substitution figure per label: left, each firing latent's partner score against its matched
    decoder cosine (shared / orphan coloured; at most `max_points` drawn, a fixed random subset); right, mean
    scores of shared and orphan latents for the partner and both controls (bars: mean, lines: one standard error)."""
    require_columns(frame, SUBSTITUTION_FIGURE_COLUMNS, "substitution")
    means = substitution_means(frame)
    panels = []
    for label in dict.fromkeys(frame["label"]):
        rows = frame[(frame["label"] == label) & (frame["firing_rows"] > 0)]
        shown = rows if len(rows) <= max_points else rows.sample(max_points, random_state=0)
        dots = pd.DataFrame({"cosine": shown["dec_cos"], "score": shown["score_partner"], "latent": shown["latent"],
                             "kind": np.where(shown["shared"], "shared", "orphan")})
        lo = float(min(-0.5, np.nanpercentile(rows["score_partner"], 1))) if len(rows) else -0.5
        kinds = alt.Scale(domain=["shared", "orphan"], range=[style.agree_color, style.disagree_color])
        scatter = alt.Chart(dots).mark_circle(size=24, opacity=0.55).encode(
            x=alt.X("cosine:Q", title="Matched decoder cosine with the other seed", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("score:Q", title="Substitution score of the partner", scale=alt.Scale(domain=[lo, 1.05], clamp=True)),
            color=alt.Color("kind:N", title="latent", scale=kinds),
            tooltip=["latent:Q", alt.Tooltip("cosine:Q", format=".3f"), alt.Tooltip("score:Q", format=".3f")],
        )
        rule = alt.Chart(pd.DataFrame({"x": [threshold]})).mark_rule(color=style.threshold_color, strokeDash=[4, 3]).encode(x="x:Q")
        zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color=style.paper_color, strokeDash=[2, 2]).encode(y="y:Q")
        left = alt.layer(scatter, rule, zero).properties(
            width=style.panel_width, height=style.panel_height,
            title=alt.TitleParams(label, subtitle=f"{len(rows)} firing latents; 1 = the partner does the latent's job, 0 = no better than dropping it",
                                  fontSize=style.header_size),
        )
        m = means[means["label"] == label]
        x = alt.X("candidate:N", title=None, sort=list(CANDIDATES.values()), axis=alt.Axis(labelAngle=0))
        base = alt.Chart(m)
        right = alt.layer(
            base.mark_bar(opacity=0.8).encode(
                x=x, xOffset=alt.XOffset("kind:N", sort=["shared", "orphan"]), y=alt.Y("mean:Q", title="Mean substitution score"),
                color=alt.Color("kind:N", title="latent", scale=kinds),
                tooltip=["kind:N", "candidate:N", "count:Q", alt.Tooltip("mean:Q", format=".3f"), alt.Tooltip("sem:Q", format=".3f")]),
            base.mark_rule(color="#333333").encode(x=x, xOffset=alt.XOffset("kind:N", sort=["shared", "orphan"]), y="lo:Q", y2="hi:Q"),
        ).properties(width=style.panel_width, height=style.panel_height,
                     title=alt.TitleParams("Partners of each matching against controls",
                                           subtitle="partner: the exact (Hungarian) matching; mean over firing latents; line: one standard error",
                                           fontSize=style.header_size))
        panels.append(alt.hconcat(left, right, spacing=30))
    chart = alt.vconcat(*panels, spacing=30).properties(
        title=alt.TitleParams("Do partners in another seed do the same job? Substitution in the reconstruction",
                              subtitle="score = 1 - (error with the latent swapped for the candidate) / (error with it dropped), held-out rows")
    )
    return apply_style(chart, style)


def fig_loss_recovered(summary: pd.DataFrame, *, style: FigureStyle) -> alt.TopLevelMixin:
    """Returns loss recovered (mean over seeds, line: min to max) against the shared fraction (paper's labelling)
    of every measured variant, one panel per site: do SAEs with more orphans keep less of the model's behaviour?"""
    require_columns(summary, ["site", "sae", "shared_paper_mean", "loss_recovered", "loss_recovered_std", "seeds"], "summary")
    rows = summary[summary["loss_recovered"].notna()]
    if rows.empty:
        raise ValueError("no variant in the summary has loss recovered; nothing to draw")
    frame = rows.assign(lo=rows["loss_recovered"] - rows["loss_recovered_std"], hi=rows["loss_recovered"] + rows["loss_recovered_std"])
    frame = frame[["site", "sae", "seeds", "shared_paper_mean", "loss_recovered", "loss_recovered_std", "lo", "hi"]]
    x = alt.X("shared_paper_mean:Q", title="Shared fraction (paper's labelling)")
    y = alt.Y("loss_recovered:Q", title="Loss recovered", scale=alt.Scale(zero=False))
    color = alt.Color("sae:N", title="SAE", scale=alt.Scale(range=style.label_colors))
    base = alt.Chart(frame)
    panels = []
    for site in dict.fromkeys(frame["site"]):
        one = base.transform_filter(alt.datum.site == site)
        panels.append(alt.layer(
            one.mark_rule().encode(x=x, y="lo:Q", y2="hi:Q", color=color),
            one.mark_point(filled=True, size=70).encode(x=x, y=y, color=color, tooltip=[
                "sae:N", "seeds:Q", alt.Tooltip("shared_paper_mean:Q", format=".3f"), alt.Tooltip("loss_recovered:Q", format=".4f"),
                alt.Tooltip("loss_recovered_std:Q", format=".4f")]),
        ).properties(width=style.panel_width, height=style.panel_height, title=alt.TitleParams(site, fontSize=style.header_size)))
    chart = alt.hconcat(*panels, spacing=30).properties(
        title=alt.TitleParams("Loss recovered per SAE variant against its shared fraction",
                              subtitle="(CE_zero - CE_sae) / (CE_zero - CE_clean) on held-out contexts; line: ± one std over seeds")
    )
    return apply_style(chart, style)
