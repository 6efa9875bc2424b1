"""The paper's Figures 1-3 as altair charts.

Every figure takes tables with a `label` column (one label per site/SAE variant, in the order they
should appear), so the workflow can draw one study or several side by side. The charts embed small
pre-aggregated tables (histogram bins, box statistics, curve means), never one row per latent: that
keeps the HTML small, needs no altair row limit, and makes the statistics shown explicit and testable.

Style, reading labelled tables and saving charts: `saeseeds.figures.style`.
"""

from __future__ import annotations

import math
from typing import Mapping

import altair as alt
import numpy as np
import pandas as pd

from saeseeds.figures.style import FigureStyle, apply_style, label_colors, message_chart, ordered_labels, require_columns
from saeseeds.stats.powerlaw import OFFSET, PLAIN, PowerLawComparison, only_in_base_curve

PAPER_ONLY_IN_BASE = 0.35
"""Paulo & Belrose (2025), Sec. 4: with 9 seeds about 35% of latents are only in the base SAE."""

PAPER_ONLY_IN_BASE_SEEDS = 9
"""Number of seeds at which the paper reports `PAPER_ONLY_IN_BASE`."""

AGREE = "same partner"
DISAGREE = "different partners"
MODEL_NAMES = {PLAIN: "a·n⁻ᵇ", OFFSET: "a·n⁻ᵇ + c"}


def fig1_matched_cosine(matches: pd.DataFrame, *, threshold: float, style: FigureStyle) -> alt.TopLevelMixin:
    """Returns Fig. 1: histograms of matched encoder and decoder cosines, stacked by partner agreement.

    `matches` holds rows of matches parquet files with a `label` column; one row of panels per label.
    The paper's figure shows one pair of seeds, so pass one pair per label (the workflow passes the
    first two seeds); all rows given are counted. `threshold` is the shared-latent cosine threshold.
    """
    require_columns(matches, ["label", "enc_partner", "dec_partner", "enc_cos", "dec_cos", "shared"], "matches")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    labels = ordered_labels(matches)
    hist = _cosine_histogram(matches, style.cosine_bin_width)
    shared = matches.groupby("label", sort=False)["shared"].mean()
    lo = float(hist["lo"].min())

    color = alt.Color(
        "agreement:N",
        scale=alt.Scale(domain=[AGREE, DISAGREE], range=[style.agree_color, style.disagree_color]),
        legend=alt.Legend(title="Encoder and decoder matchings pick", orient="top", titleLimit=400, labelLimit=300),
    )
    tooltip = [
        alt.Tooltip("label:N", title="site / SAE"),
        alt.Tooltip("matrix:N", title="matched on"),
        alt.Tooltip("agreement:N"),
        alt.Tooltip("lo:Q", title="cosine from", format=".2f"),
        alt.Tooltip("hi:Q", title="cosine to", format=".2f"),
        alt.Tooltip("count:Q", title="latents"),
    ]
    marker = pd.DataFrame({"x": [threshold], "text": [f"threshold {threshold:g}"]})
    rows = []
    for label in labels:
        panels = []
        for matrix, title in (("encoder", "Encoder rows"), ("decoder", "Decoder rows")):
            data = hist[(hist["label"] == label) & (hist["matrix"] == matrix)]
            bars = alt.Chart(data).mark_bar(stroke="white", strokeWidth=0.3).encode(
                x=alt.X("lo:Q", title="Cosine similarity with matched latent",
                        scale=alt.Scale(domain=[lo, 1.0], nice=False)),
                x2="hi:Q",
                y=alt.Y("y0:Q", title="Number of latents"),
                y2="y1:Q",
                color=color,
                tooltip=tooltip,
            )
            rule = alt.Chart(marker).mark_rule(color=style.threshold_color, strokeDash=[5, 4], strokeWidth=1.5).encode(
                x="x:Q"
            )
            text = alt.Chart(marker).mark_text(
                align="right", baseline="top", dx=-4, dy=4, fontSize=style.annotation_size, color=style.threshold_color
            ).encode(x="x:Q", y=alt.value(0), text="text:N")
            panels.append(
                alt.layer(bars, rule, text).properties(
                    width=style.panel_width, height=style.panel_height,
                    title=alt.TitleParams(title, fontSize=style.header_size, fontWeight="normal"),
                )
            )
        rows.append(
            alt.hconcat(*panels, spacing=30)
            .resolve_scale(y="shared")
            .properties(title=alt.TitleParams(f"{label}: {shared[label]:.1%} of latents shared", fontSize=style.header_size))
        )
    chart = alt.vconcat(*rows, spacing=30).properties(
        title=alt.TitleParams(
            "Matched cosine similarity between two seeds",
            subtitle=[
                "Hungarian matching on encoder rows and on decoder rows. A latent is shared if it has the same",
                f"partner in both matchings and both cosines are ≥ {threshold:g}.",
            ],
        )
    )
    return apply_style(chart, style)


def fig2_only_in_base(
    subsets: pd.DataFrame,
    fits: Mapping[str, PowerLawComparison],
    *,
    style: FigureStyle,
    paper_level: float | None = PAPER_ONLY_IN_BASE,
    paper_seeds: int = PAPER_ONLY_IN_BASE_SEEDS,
    extrapolate_to: int | None = None,
    intervals: Mapping[str, Mapping[str, float]] | None = None,
) -> alt.TopLevelMixin:
    """Returns Fig. 2: only-in-base fraction vs number of seeds (left) and its power-law fits on log axes (right).

    `intervals` maps a label to its seed-jackknife intervals (`jackknife.subset_intervals`); the subtitle
    then states the 95% intervals of the offset c and of ΔAIC.

    `subsets` holds rows of subsets parquet files with a `label` column. `fits` maps a label to its
    `PowerLawComparison` (from `powerlaw.fit_only_in_base`); a label without an entry is drawn without
    fits and the subtitle says so. `paper_level` draws the paper's reference as a dashed rule (None: no rule).
    `extrapolate_to` extends the fitted curves (and the log axis) past the largest number of seeds, where
    the two models part ways; None draws them over the data only.
    Points are means over every (subset, base) row of a size; bars are ±1 std, the band min-max.
    """
    require_columns(subsets, ["label", "size", "only_in_base"], "subsets")
    labels = ordered_labels(subsets)
    unknown = sorted(set(fits) - set(labels))
    if unknown:
        raise ValueError(f"fits given for labels not in subsets: {unknown}; subsets has {labels}")
    colors = label_colors(labels, style)
    curve = pd.concat(
        [only_in_base_curve(subsets[subsets["label"] == label]).assign(label=label) for label in labels],
        ignore_index=True,
    )
    curve["lo_std"] = (curve["mean"] - curve["std"]).clip(lower=0)
    curve["hi_std"] = (curve["mean"] + curve["std"]).clip(upper=1)
    n_max = int(curve["size"].max())
    n_ticks = list(range(2, n_max + 1))
    x_last = max(n_max, 3)  # a 2-seed study has one point; keep the axis a real interval

    color = alt.Color("label:N", sort=labels, scale=alt.Scale(domain=labels, range=colors),
                      legend=alt.Legend(title="site / SAE", orient="bottom", direction="vertical", symbolOpacity=1,
                                        symbolType="circle", labelLimit=0) if len(labels) > 1 else None)
    tooltip = [
        alt.Tooltip("label:N", title="site / SAE"),
        alt.Tooltip("size:Q", title="seeds"),
        alt.Tooltip("mean:Q", format=".3f"),
        alt.Tooltip("std:Q", format=".3f"),
        alt.Tooltip("min:Q", format=".3f"),
        alt.Tooltip("max:Q", format=".3f"),
        alt.Tooltip("count:Q", title="(subset, base) rows"),
    ]
    x_lin = alt.X("size:Q", title="Number of seeds", scale=alt.Scale(domain=[2, x_last], nice=False),
                  axis=alt.Axis(values=n_ticks, format="d"))
    y_title = "Fraction of latents only in base SAE"
    base = alt.Chart(curve)
    band = base.mark_area(opacity=style.band_opacity).encode(x=x_lin, y="min:Q", y2="max:Q", color=color)
    bars = base.mark_rule(strokeWidth=1.5).encode(x=x_lin, y="lo_std:Q", y2="hi_std:Q", color=color)
    line = base.mark_line(point=alt.OverlayMarkDef(size=45, filled=True)).encode(
        x=x_lin,
        y=alt.Y("mean:Q", title=y_title, scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        color=color,
        tooltip=tooltip,
    )
    left_layers = [band, bars, line]
    if paper_level is not None:
        if not 0 <= paper_level <= 1:
            raise ValueError(f"paper_level must be a fraction in [0, 1], got {paper_level}")
        ref = alt.Chart(pd.DataFrame({"y": [paper_level], "x": [x_last],
                                      "text": [f"paper: ~{paper_level:.0%} at {paper_seeds} seeds"]}))
        left_layers += [
            ref.mark_rule(color=style.paper_color, strokeDash=[6, 4], strokeWidth=1.5).encode(y="y:Q"),
            ref.mark_text(align="right", baseline="top", dy=4, fontSize=style.annotation_size,
                          color=style.paper_color).encode(x="x:Q", y="y:Q", text="text:N"),
        ]
    left = alt.layer(*left_layers).properties(
        width=style.panel_width, height=style.panel_height,
        title=alt.TitleParams("Mean over all subsets and bases",
                              subtitle="bars: ±1 std; band: min–max over (subset, base)"),
    )

    # Log-log panel: zero fractions have no logarithm and are left out.
    positive = curve[curve["mean"] > 0]
    if extrapolate_to is not None and extrapolate_to <= n_max:
        raise ValueError(f"extrapolate_to must exceed the largest number of seeds {n_max}, got {extrapolate_to}")
    x_end = extrapolate_to or x_last
    fit_rows = []
    grid = np.geomspace(2, x_end, 80) if x_end > 2 else np.array([2.0])
    for label, comparison in fits.items():
        for fit in (comparison.plain, comparison.offset):
            if fit is not None:
                fit_rows.append(pd.DataFrame({"label": label, "model": MODEL_NAMES[fit.model],
                                              "size": grid, "fit": fit.predict(grid)}))
    fit_frame = pd.concat(fit_rows, ignore_index=True) if fit_rows else pd.DataFrame(columns=["fit"])
    fit_frame = fit_frame[fit_frame["fit"] > 0]
    shown = np.concatenate([positive["mean"].to_numpy(), fit_frame["fit"].to_numpy(dtype=float)])
    y_lo, y_hi = (float(shown.min()) / 1.15, min(float(shown.max()) * 1.15, 1.0)) if shown.size else (0.01, 1.0)
    if x_end <= 12:
        log_ticks = list(range(2, x_end + 1))
    else:  # sparser ticks once the axis runs far past the data, so labels do not collide
        log_ticks = [v for v in (2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100, 200, 500, 1000) if v <= x_end]
    x_log = alt.X("size:Q", title="Number of seeds (log)",
                  scale=alt.Scale(type="log", domain=[2, x_end], nice=False),
                  axis=alt.Axis(values=log_ticks, format="d"))
    y_log = alt.Y("mean:Q", title=y_title + " (log)", scale=alt.Scale(type="log", domain=[y_lo, y_hi], nice=False),
                  axis=alt.Axis(format=".0%", values=_log_ticks(y_lo, y_hi)))
    right_layers = [
        alt.Chart(positive).mark_point(size=55, filled=True, opacity=1).encode(
            x=x_log, y=y_log, color=color, tooltip=tooltip
        )
    ]
    if not fit_frame.empty:
        right_layers.insert(0, 
            alt.Chart(fit_frame).mark_line(strokeWidth=1.8, clip=True).encode(
                x=x_log,
                y=alt.Y("fit:Q", scale=alt.Scale(type="log", domain=[y_lo, y_hi], nice=False)),
                color=color,
                strokeDash=alt.StrokeDash(
                    "model:N",
                    scale=alt.Scale(domain=[MODEL_NAMES[PLAIN], MODEL_NAMES[OFFSET]], range=[[6, 4], [1, 0]]),
                    legend=alt.Legend(title="power-law fit", orient="bottom", symbolType="stroke",
                                      symbolSize=500, symbolStrokeWidth=2, symbolStrokeColor="#333333"),
                ),
                detail="label:N",
            )
        )
    right = alt.layer(*right_layers).properties(
        width=style.panel_width, height=style.panel_height,
        title=alt.TitleParams("Log–log axes with power-law fits",
                              subtitle=("no fits drawn" if fit_frame.empty else
                                        "fits extrapolated beyond the data" if extrapolate_to else "fitted to the means")),
    )

    subtitle = []
    for label in labels:
        prefix = f"{label}: " if len(labels) > 1 else ""
        subtitle += [prefix + line for line in _fit_summary(fits.get(label), (intervals or {}).get(label))]
    chart = alt.hconcat(left, right, spacing=40).properties(
        title=alt.TitleParams("Latents found only in the base SAE vs number of seeds", subtitle=subtitle)
    )
    return apply_style(chart, style)


def fig3_firing(latents: pd.DataFrame, *, base: int, style: FigureStyle) -> alt.TopLevelMixin:
    """Returns Fig. 3: firing frequency (log axis) of the base seed's latents by number of other seeds sharing them.

    `latents` holds rows of latents parquet files with a `label` column; one panel per label. Only rows
    with `base == base` are drawn; the number of seeds N of a label is its number of distinct bases, so
    groups run 0..N-1. Boxes are quartiles, whiskers the furthest points within 1.5 IQR, both computed
    on log10(frequency) to match the axis. Latents that never fired (frequency 0) cannot go on a log
    axis; their number is printed under the panel title.
    """
    require_columns(latents, ["label", "base", "latent", "n_shared", "firing_frequency"], "latents")
    if latents.empty:  # every set left out: external sets whose firing frequencies are unknown
        return message_chart("No SAE set with known firing frequencies to draw (see the rule's log)", style)
    labels = ordered_labels(latents)
    boxes, notes, n_seeds = [], {}, 0
    for label in labels:
        rows = latents[latents["label"] == label]
        bases = sorted(rows["base"].unique().tolist())
        if base not in bases:
            raise ValueError(f"base seed {base} not in latents of {label!r}; bases there: {bases}")
        n = len(bases)
        n_seeds = max(n_seeds, n)
        rows = rows[rows["base"] == base]
        shared = rows["n_shared"].to_numpy()
        if shared.min() < 0 or shared.max() > n - 1:
            raise ValueError(f"n_shared of {label!r} must lie in 0..{n - 1} ({n} seeds); got {shared.min()}..{shared.max()}")
        freq = rows["firing_frequency"].to_numpy(dtype=float)
        if not np.all(np.isfinite(freq)) or freq.min() < 0 or freq.max() > 1:
            raise ValueError(f"firing_frequency of {label!r} must be fractions in [0, 1]")
        dead = int((freq == 0).sum())
        notes[label] = f"base seed {base}, {n} seeds; {dead} latents that never fired are not shown"
        for k in range(n):
            values = freq[(shared == k) & (freq > 0)]
            if values.size:
                boxes.append(_box_stats(values) | {"label": label, "n_shared": k})
    if not boxes:
        raise ValueError("no latent of the base seed ever fired; nothing to draw on a log axis")
    stats = pd.DataFrame(boxes)
    domain = list(range(n_seeds))
    decades = np.log10(pd.concat([stats["whisker_lo"], stats["whisker_hi"]]).to_numpy())
    y_domain = [10.0 ** math.floor(decades.min()), 10.0 ** math.ceil(decades.max())]
    y_ticks = [10.0**k for k in range(math.floor(decades.min()), math.ceil(decades.max()) + 1)]

    x = alt.X("n_shared:O", title=f"Number of other seeds sharing the latent (of {n_seeds - 1})",
              scale=alt.Scale(domain=domain), axis=alt.Axis(labelAngle=0))
    y_scale = alt.Scale(type="log", domain=y_domain, nice=False)
    tooltip = [
        alt.Tooltip("n_shared:O", title="shared with"),
        alt.Tooltip("count:Q", title="latents"),
        alt.Tooltip("median:Q", format=".2e"),
        alt.Tooltip("q1:Q", format=".2e"),
        alt.Tooltip("q3:Q", format=".2e"),
        alt.Tooltip("whisker_lo:Q", format=".2e"),
        alt.Tooltip("whisker_hi:Q", format=".2e"),
    ]
    width = style.panel_width * 1.2
    box_size = max(6.0, min(30.0, width / (1.8 * n_seeds)))
    panels = []
    for label in labels:
        data = alt.Chart(stats[stats["label"] == label])
        # Two whisker segments so that none shows through the box.
        whisker = data.mark_rule(strokeWidth=1.2, color="#333333").encode(
            x=x,
            y=alt.Y("whisker_lo:Q", scale=y_scale, title="Firing frequency (fraction of tokens, log)",
                    axis=alt.Axis(format=".0e", values=y_ticks)),
            y2="q1:Q",
        )
        whisker_hi = data.mark_rule(strokeWidth=1.2, color="#333333").encode(
            x=x, y=alt.Y("q3:Q", scale=y_scale), y2="whisker_hi:Q"
        )
        box = data.mark_bar(size=box_size, stroke="#333333", strokeWidth=0.8, opacity=0.75).encode(
            x=x, y=alt.Y("q1:Q", scale=y_scale), y2="q3:Q",
            color=alt.Color("n_shared:O", scale=alt.Scale(scheme=style.n_shared_scheme, domain=domain), legend=None),
            tooltip=tooltip,
        )
        median = data.mark_tick(color="black", thickness=2.5, size=box_size).encode(
            x=x, y=alt.Y("median:Q", scale=y_scale)
        )
        count = data.mark_text(baseline="bottom", dy=-4, fontSize=style.annotation_size, color="#333333").encode(
            x=x, y=alt.Y("whisker_hi:Q", scale=y_scale), text="count:Q"
        )
        panels.append(
            alt.layer(whisker, whisker_hi, box, median, count).properties(
                width=width, height=style.panel_height * 1.2,
                title=alt.TitleParams(label, subtitle=notes[label], fontSize=style.header_size),
            )
        )
    chart = alt.hconcat(*panels, spacing=30).resolve_scale(y="shared").properties(
        title=alt.TitleParams(
            "Firing frequency of latents by how many other seeds share them",
            subtitle=[
                "Boxes: quartiles; black tick: median; whiskers: furthest latent within 1.5 IQR (on log10);",
                "number above each box: latents in the group.",
            ],
        )
    )
    return apply_style(chart, style)


def _cosine_histogram(matches: pd.DataFrame, bin_width: float) -> pd.DataFrame:
    """Returns histogram rows `label, matrix, agreement, order, lo, hi, count, y1, y0` of the matched cosines."""
    rows = []
    n_top = math.ceil(1.0 / bin_width - 1e-9)
    for label, group in matches.groupby("label", sort=False):
        agree = (group["enc_partner"].to_numpy() == group["dec_partner"].to_numpy())
        for matrix, column in (("encoder", "enc_cos"), ("decoder", "dec_cos")):
            cos = group[column].to_numpy(dtype=float)
            if not np.all(np.isfinite(cos)):
                raise ValueError(f"{column} of {label!r} has non-finite values")
            # Integer bin indices avoid float edge drift; cos == 1 (and float overshoot) joins the top bin.
            idx = np.minimum(np.floor(cos / bin_width).astype(int), n_top - 1)
            first = min(int(idx.min()), 0)
            for name, order, mask in ((AGREE, 0, agree), (DISAGREE, 1, ~agree)):
                counts = np.bincount(idx[mask] - first, minlength=n_top - first)
                for i in np.flatnonzero(counts):
                    k = i + first
                    rows.append((label, matrix, name, order, round(k * bin_width, 10),
                                 round(min((k + 1) * bin_width, 1.0), 10), int(counts[i])))
    hist = pd.DataFrame(rows, columns=["label", "matrix", "agreement", "order", "lo", "hi", "count"])
    # Stack explicitly (agreeing latents at the bottom): Vega-Lite does not stack ranged x bars.
    hist = hist.sort_values(["label", "matrix", "lo", "order"], kind="stable", ignore_index=True)
    hist["y1"] = hist.groupby(["label", "matrix", "lo"], sort=False)["count"].cumsum()
    hist["y0"] = hist["y1"] - hist["count"]
    return hist


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Returns round tick values (1-2-5 per decade, plus 30%...90%) between `lo` and `hi`."""
    candidates = []
    for decade in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        candidates += [m * 10.0**decade for m in (1, 2, 3, 5)]
    candidates += [0.4, 0.6, 0.7, 0.8, 0.9]
    ticks = sorted({round(v, 12) for v in candidates if lo <= v <= hi})
    if len(ticks) < 2:
        ticks = sorted({round(lo, 3), round(hi, 3)})
    return ticks


def _box_stats(values: np.ndarray) -> dict[str, float]:
    """Returns quartiles and Tukey whiskers of positive `values`, computed on log10 to match a log axis."""
    logs = np.log10(values)
    q1, med, q3 = np.quantile(logs, [0.25, 0.5, 0.75])
    iqr = q3 - q1
    lo = logs[logs >= q1 - 1.5 * iqr].min()
    hi = logs[logs <= q3 + 1.5 * iqr].max()
    return {
        "count": int(values.size),
        "q1": float(10**q1), "median": float(10**med), "q3": float(10**q3),
        "whisker_lo": float(10**lo), "whisker_hi": float(10**hi),
    }


def _fit_summary(comparison: PowerLawComparison | None, intervals: Mapping[str, float] | None = None) -> list[str]:
    """Returns the subtitle lines that state both fits, their comparison and the seed-jackknife intervals.

    No F-test p-value: the curve's points are means over the same SAEs, not independent, so the F
    distribution does not apply; the F statistic is shown as a descriptive number only.
    """
    if comparison is None:
        return ["no power-law fit (needs at least 3 seed counts, i.e. 4 seeds)"]
    lines = [f"{MODEL_NAMES[PLAIN]}: {_params_text(comparison.plain)}"]
    if comparison.offset is None:
        lines.append(f"{MODEL_NAMES[OFFSET]}: not fitted ({comparison.offset_skipped})")
        return lines
    lines.append(f"{MODEL_NAMES[OFFSET]}: {_params_text(comparison.offset)}")
    parts = []
    if comparison.f_statistic is not None:
        parts.append(f"F = {_number(comparison.f_statistic)} (descriptive, no p-value)")
    if comparison.delta_aic is not None:
        parts.append(f"ΔAIC = {comparison.delta_aic:+.1f}")
    if comparison.delta_bic is not None:
        parts.append(f"ΔBIC = {comparison.delta_bic:+.1f}")
    if parts:
        lines.append("offset vs none: " + ", ".join(parts) + " (negative Δ favours the offset)")
    if intervals is not None and math.isfinite(intervals.get("powerlaw_c_ci_lo", math.nan)):
        lines.append(
            f"seed jackknife 95%: c in [{intervals['powerlaw_c_ci_lo']:.3f}, {intervals['powerlaw_c_ci_hi']:.3f}], "
            f"ΔAIC in [{intervals['powerlaw_delta_aic_ci_lo']:+.1f}, {intervals['powerlaw_delta_aic_ci_hi']:+.1f}]"
        )
    elif intervals is not None:
        lines.append("seed jackknife: no interval for c (needs at least 6 seeds)")
    return lines


def _params_text(fit) -> str:
    def one(name: str) -> str:
        se = fit.stderr[name]
        return f"{name} = {fit.params[name]:.3f}" + (f" ± {se:.3f}" if se is not None else "")

    return ", ".join(one(name) for name in fit.params) + f"; RSS = {_number(fit.rss)}"


def _number(value: float) -> str:
    return f"{value:.2g}" if value == 0 or 1e-3 <= abs(value) < 1e4 else f"{value:.1e}"


