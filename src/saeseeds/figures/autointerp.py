"""Fig 6 (detection score against how widely a latent is shared, and against its matched cosine) and Table 1
(latent pairs of two seeds at several alignment levels with both explanations)."""

from __future__ import annotations

import html
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd

from saeseeds.common.atomic import atomic_write
from saeseeds.figures.style import FigureStyle, apply_style, require_columns

ALIGNMENT_LEVELS = (0.0, 0.3, 0.5, 0.7, 0.9, 1.0 + 1e-9)
"""Edges of the matched-cosine levels Table 1 draws examples from (the last one holds cosine 1)."""
SCORE_COLUMNS = ["label", "seed", "latent", "score", "dec_cos", "shared"]


def with_sharing(scores: pd.DataFrame, orphans: pd.DataFrame) -> pd.DataFrame:
    """Returns `scores` (label, seed, latent, ...) with `n_shared` (other seeds sharing the latent) and `n_seeds`
    taken from the orphans latents tables (label, base, latent, n_shared) of the same labels."""
    require_columns(scores, SCORE_COLUMNS, "scores")
    require_columns(orphans, ["label", "base", "latent", "n_shared"], "orphans latents")
    n_seeds = orphans.groupby("label")["base"].nunique().rename("n_seeds")
    sharing = orphans.drop_duplicates(["label", "base", "latent"]).rename(columns={"base": "seed"})[["label", "seed", "latent", "n_shared"]]
    out = scores.merge(sharing, on=["label", "seed", "latent"], how="left", validate="one_to_one")
    missing = out["n_shared"].isna()
    if missing.any():
        first = out[missing].iloc[0]
        raise ValueError(f"{first.label}: seed {first.seed} latent {first.latent} has a score but no orphans row")
    return out.astype({"n_shared": "int64"}).join(n_seeds, on="label")


def _box(values: np.ndarray) -> dict[str, float]:
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"count": int(len(values)), "mean": float(values.mean()), "q1": q1, "median": median, "q3": q3,
            "lo": float(values.min()), "hi": float(values.max())}


def fig6_autointerp(frame: pd.DataFrame, *, threshold: float, style: FigureStyle, max_points: int = 3000) -> alt.TopLevelMixin:
    """Returns Fig. 6 per label: left, detection score against the matched decoder cosine of the two seeds'
    latents (dots coloured shared / orphan; at most `max_points` drawn, a fixed random subset); right, the
    score's quartiles, range and mean by the number of seeds sharing the latent."""
    require_columns(frame, SCORE_COLUMNS + ["n_shared", "n_seeds"], "Fig 6")
    scored = frame[frame["score"].notna()]
    if scored.empty:
        raise ValueError("no latent has a detection score; nothing to draw (see the autointerp logs for failed replies)")
    panels = []
    for label in dict.fromkeys(frame["label"]):
        rows = scored[scored["label"] == label]
        n_seeds = int(frame.loc[frame["label"] == label, "n_seeds"].iloc[0])
        shown = rows if len(rows) <= max_points else rows.sample(max_points, random_state=0)
        dots = pd.DataFrame({"cosine": shown["dec_cos"], "score": shown["score"], "seed": shown["seed"], "latent": shown["latent"],
                             "kind": np.where(shown["shared"], "shared", "orphan")})
        scatter = alt.Chart(dots).mark_circle(size=28, opacity=0.6).encode(
            x=alt.X("cosine:Q", title="Matched decoder cosine with the other seed", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("score:Q", title="Detection score (balanced accuracy)", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("kind:N", title="latent", scale=alt.Scale(domain=["shared", "orphan"], range=[style.agree_color, style.disagree_color])),
            tooltip=["seed:O", "latent:Q", alt.Tooltip("cosine:Q", format=".3f"), alt.Tooltip("score:Q", format=".3f")],
        )
        rule = alt.Chart(pd.DataFrame({"x": [threshold]})).mark_rule(color=style.threshold_color, strokeDash=[4, 3]).encode(x="x:Q")
        chance = alt.Chart(pd.DataFrame({"y": [0.5]})).mark_rule(color=style.paper_color, strokeDash=[2, 2]).encode(y="y:Q")
        left = alt.layer(scatter, rule, chance).properties(
            width=style.panel_width, height=style.panel_height,
            title=alt.TitleParams(label, subtitle=f"{len(rows)} scored latents of 2 seeds; dashed: threshold {threshold}, chance 0.5",
                                  fontSize=style.header_size),
        )
        boxes = pd.DataFrame([_box(rows.loc[rows["n_shared"] == k, "score"].to_numpy()) | {"n_shared": k}
                              for k in range(n_seeds) if (rows["n_shared"] == k).any()])
        x = alt.X("n_shared:O", title=f"Other seeds sharing the latent (of {n_seeds - 1})", scale=alt.Scale(domain=list(range(n_seeds))),
                  axis=alt.Axis(labelAngle=0))
        y = alt.Y("lo:Q", title="Detection score", scale=alt.Scale(domain=[0, 1]))
        base = alt.Chart(boxes)
        right = alt.layer(
            base.mark_rule(color="#333333").encode(x=x, y=y, y2="hi:Q"),
            base.mark_bar(size=14, opacity=0.75, stroke="#333333").encode(
                x=x, y="q1:Q", y2="q3:Q",
                color=alt.Color("n_shared:O", scale=alt.Scale(scheme=style.n_shared_scheme, domain=list(range(n_seeds))), legend=None),
                tooltip=["n_shared:O", "count:Q", alt.Tooltip("mean:Q", format=".3f"), alt.Tooltip("median:Q", format=".3f")]),
            base.mark_tick(color="black", thickness=2.5, size=14).encode(x=x, y="median:Q"),
            base.mark_point(shape="diamond", filled=True, color="white", stroke="black", size=40).encode(x=x, y="mean:Q"),
            base.mark_text(baseline="bottom", dy=-4, fontSize=style.annotation_size).encode(x=x, y="hi:Q", text="count:Q"),
        ).properties(width=style.panel_width, height=style.panel_height,
                     title=alt.TitleParams("Score by sharing", subtitle="box: quartiles; tick: median; diamond: mean; line: range",
                                           fontSize=style.header_size))
        panels.append(alt.hconcat(left, right, spacing=30).resolve_scale(color="independent"))
    chart = alt.vconcat(*panels, spacing=30).properties(
        title=alt.TitleParams("Are orphan latents interpretable? Detection scores of autointerp explanations",
                              subtitle="Paper (32K latents, Pythia-160M): mean score 0.72, quartiles 0.62 / 0.80")
    )
    return apply_style(chart, style)


def table1(scores: pd.DataFrame, *, per_level: int = 2, levels: tuple[float, ...] = ALIGNMENT_LEVELS) -> pd.DataFrame:
    """Returns Table 1: per label and matched-cosine level, the `per_level` latent pairs (first seed's latent and
    its decoder counterpart) whose explanations score best on average, with both explanations and scores."""
    require_columns(scores, SCORE_COLUMNS + ["counterpart", "counterpart_seed", "explanation", "enc_cos"], "scores")
    rows = []
    for label in dict.fromkeys(scores["label"]):
        mine = scores[scores["label"] == label]
        a = int(mine["seed"].min())
        first = mine[mine["seed"] == a]
        other = mine[mine["seed"] != a].set_index("latent")
        for lo, hi in zip(levels[:-1], levels[1:]):
            level = first[(first["dec_cos"] >= lo) & (first["dec_cos"] < hi)]
            pairs = []
            for r in level.itertuples():
                if r.counterpart not in other.index:
                    continue
                c = other.loc[r.counterpart]
                pairs.append({"label": label, "level": f"[{lo:.1f}, {min(hi, 1.0):.1f}{']' if hi > 1 else ')'}",
                              "dec_cos": r.dec_cos, "enc_cos": r.enc_cos, "shared": bool(r.shared),
                              "seed_a": a, "latent_a": int(r.latent), "explanation_a": r.explanation, "score_a": r.score,
                              "seed_b": int(r.counterpart_seed), "latent_b": int(r.counterpart), "explanation_b": c["explanation"], "score_b": c["score"]})
            pairs.sort(key=lambda p: (-_pair_score(p["score_a"], p["score_b"]), p["latent_a"]))
            rows += pairs[:per_level]
    return pd.DataFrame(rows, columns=["label", "level", "dec_cos", "enc_cos", "shared", "seed_a", "latent_a", "explanation_a", "score_a",
                                       "seed_b", "latent_b", "explanation_b", "score_b"])


def _pair_score(a: float, b: float) -> float:
    """Mean of the scores that exist (a latent without explanation has none); -1 when neither does."""
    values = [v for v in (a, b) if v == v]  # NaN != NaN
    return float(np.mean(values)) if values else -1.0


def write_table1(table: pd.DataFrame, csv_path: str | Path, html_path: str | Path) -> None:
    """Writes Table 1 as CSV and as a self-contained HTML page (text escaped), each atomically."""
    atomic_write(csv_path, lambda tmp: table.to_csv(tmp, index=False))
    body = table.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="—", escape=True, border=0)
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Table 1: explanations of latent pairs</title>"
        "<style>body{font-family:'DejaVu Sans',sans-serif;font-size:13px}td,th{padding:4px 8px;border-bottom:1px solid #ddd;"
        "vertical-align:top}</style></head><body><h2>Table 1: latent pairs of two seeds at several alignment levels</h2>"
        f"<p>{html.escape('Pairs are a latent of the first seed and its decoder counterpart in the second; per level, the pairs whose explanations score best on average.')}</p>"
        f"{body}</body></html>"
    )
    atomic_write(html_path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
