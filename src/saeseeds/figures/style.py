"""What every figure shares: the style read from JSON, labelled tables in, self-contained HTML plus PNG out.

Styling comes from a JSON file read by `load_style` and passed in explicitly; only the figure rules declare
that file as input, so a styling change reruns only the figures.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence

import altair as alt
import pandas as pd

from saeseeds.common.atomic import atomic_write
from saeseeds.figures.vega_bundle import InlineTemplate


@dataclass(frozen=True)
class FigureStyle:
    """Fonts, sizes and colours of every figure; the keys of `workflow/report/figure_style.json`."""

    font: str
    """Font family of all text (must be installed where PNGs are rendered; DejaVu Sans is everywhere)."""
    title_size: float
    """Figure title size in pixels."""
    subtitle_size: float
    """Subtitle size; the subtitles carry the fitted parameters and shared fractions."""
    header_size: float
    """Facet header (panel label) size."""
    axis_title_size: float
    """Axis title size."""
    axis_label_size: float
    """Tick label size."""
    legend_size: float
    """Legend title and label size."""
    annotation_size: float
    """In-plot text (threshold, paper reference, counts)."""
    panel_width: int
    """Width of one panel in pixels."""
    panel_height: int
    """Height of one panel in pixels."""
    ppi: int
    """Resolution of the PNG (72 is 1 px per point; 200 prints sharply)."""
    agree_color: str
    """Fig. 1: latents whose encoder and decoder matchings pick the same partner (paper: blue)."""
    disagree_color: str
    """Fig. 1: latents whose two matchings disagree (paper: orange)."""
    threshold_color: str
    """Fig. 1: the shared-latent cosine threshold line."""
    paper_color: str
    """Fig. 2: the paper's reference level."""
    label_colors: list[str]
    """One colour per site/SAE label, in label order (Fig. 2); needs at least as many as labels drawn."""
    n_shared_scheme: str
    """Vega colour scheme for the number of seeds sharing a latent (Fig. 3), e.g. 'viridis'."""
    cosine_bin_width: float
    """Fig. 1 histogram bin width in cosine units (0 < w <= 0.5)."""
    band_opacity: float
    """Opacity of the min-max band in Fig. 2."""


def load_style(path: str | Path) -> FigureStyle:
    """Returns the `FigureStyle` in the JSON file at `path`; every key required, no unknown keys."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"figure style file {path} does not exist") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"figure style file {path} is not valid JSON: {err}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"figure style file {path} must hold a JSON object, got {type(raw).__name__}")
    names = {f.name: f for f in fields(FigureStyle)}
    missing = sorted(set(names) - set(raw))
    unknown = sorted(set(raw) - set(names))
    if missing or unknown:
        raise ValueError(f"figure style file {path}: missing keys {missing}, unknown keys {unknown}")
    for key, value in raw.items():
        expected = names[key].type
        if expected == "str":
            ok = isinstance(value, str) and value != ""
        elif expected in ("float", "int"):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        else:  # list[str]
            ok = isinstance(value, list) and value != [] and all(isinstance(v, str) for v in value)
        if not ok:
            raise ValueError(f"figure style file {path}: key {key!r} must be a {expected} (> 0 if numeric), got {value!r}")
    if not raw["cosine_bin_width"] <= 0.5:
        raise ValueError(f"figure style file {path}: cosine_bin_width must be in (0, 0.5], got {raw['cosine_bin_width']}")
    if not raw["band_opacity"] <= 1:
        raise ValueError(f"figure style file {path}: band_opacity must be in (0, 1], got {raw['band_opacity']}")
    return FigureStyle(**raw)


def read_labelled(pairs: Sequence[tuple[str, str | Path]]) -> pd.DataFrame:
    """Returns the parquet files of `pairs` (label, path) concatenated, with a `label` column first.

    Label order is kept: figures draw labels in this order.
    """
    if not pairs:
        raise ValueError("read_labelled needs at least one (label, path) pair")
    labels = [label for label, _ in pairs]
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        raise ValueError(f"labels must be unique; repeated: {duplicated}")
    frames = []
    for label, path in pairs:
        frame = pd.read_parquet(path)
        if "label" in frame.columns:
            raise ValueError(f"{path} already has a 'label' column")
        frame.insert(0, "label", label)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def save_chart(chart: alt.TopLevelMixin, html_path: str | Path, png_path: str | Path, *, ppi: float) -> None:
    """Writes `chart` as self-contained HTML (vega inlined, no CDN) and as PNG, each atomically."""
    html_path, png_path = Path(html_path), Path(png_path)
    html = _render(chart, "html", template=InlineTemplate()).decode("utf-8")  # altair's inline page (`vega_bundle`)
    # The default HTML pulls vega from cdn.jsdelivr.net, which offline machines and cluster nodes
    # cannot reach; check that the inlined variant really has no external script.
    external = re.findall(r"<script[^>]*\bsrc\s*=", html, flags=re.IGNORECASE)
    if external or "cdn.jsdelivr" in html:
        raise RuntimeError(f"HTML for {html_path} loads external scripts ({external[:3]}); expected inline vega")
    _write_atomic(html_path, html.encode("utf-8"))
    png = _render(chart, "png", ppi=ppi)
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise RuntimeError(f"vl-convert returned no PNG for {png_path}")
    _write_atomic(png_path, png)


def apply_style(chart: alt.TopLevelMixin, style: FigureStyle) -> alt.TopLevelMixin:
    """Returns `chart` with the style's fonts, sizes and grid (every figure ends with this)."""
    return (
        chart.configure(font=style.font, background="white")
        .configure_title(fontSize=style.title_size, subtitleFontSize=style.subtitle_size, anchor="start",
                         subtitleColor="#333333", offset=12)
        .configure_axis(titleFontSize=style.axis_title_size, labelFontSize=style.axis_label_size,
                        titleFontWeight="normal", grid=True, gridOpacity=0.4)
        .configure_legend(titleFontSize=style.legend_size, labelFontSize=style.legend_size)
        .configure_header(labelFontSize=style.header_size, titleFontSize=style.header_size)
        .configure_view(strokeWidth=0.8)
    )


def ordered_labels(frame: pd.DataFrame) -> list[str]:
    """Returns the table's labels in order of first appearance (the order figures draw them in)."""
    labels = list(dict.fromkeys(frame["label"].tolist()))
    if not labels:
        raise ValueError("no rows to draw: the table is empty")
    return labels


def label_colors(labels: list[str], style: FigureStyle) -> list[str]:
    """Returns one style colour per label, in order."""
    if len(labels) > len(style.label_colors):
        raise ValueError(f"{len(labels)} labels but the style has only {len(style.label_colors)} label_colors")
    return style.label_colors[: len(labels)]


def require_columns(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    """Raises ValueError naming the columns `frame` lacks (a figure's input that breaks its contract)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} table lacks column(s) {missing}; has {list(frame.columns)}")


def _render(chart: alt.TopLevelMixin, fmt: str, **kwargs) -> bytes:
    """Returns the bytes of `chart` in format `fmt` ('html' or 'png'), rendered in memory."""
    # altair writes text formats as str and images as bytes.
    buffer = io.StringIO() if fmt == "html" else io.BytesIO()
    chart.save(buffer, format=fmt, **kwargs)
    value = buffer.getvalue()
    return value.encode("utf-8") if isinstance(value, str) else value


def _write_atomic(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def message_chart(message: str, style: FigureStyle) -> alt.TopLevelMixin:
    """Returns a figure that says why there is nothing to draw (a study without ablations or sweeps, or no set
    whose firing frequencies are known)."""
    chart = alt.Chart(pd.DataFrame({"text": [message]})).mark_text(fontSize=style.annotation_size).encode(text="text:N")
    return apply_style(chart.properties(width=style.panel_width * 2, height=60), style)
