"""Figs A2/A3: matched vs max cosine per latent, encoder or decoder (rules figA2_encoder_cosines, figA3_decoder_cosines)."""
import pandas as pd

from saeseeds.figures.style import load_style, save_chart
from saeseeds.figures.cosines import fig_matched_vs_max
from saeseeds.common.logs import rule_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]):
    style = load_style(sm.input.style)
    matches = pd.read_parquet(sm.input.matches)
    chart = fig_matched_vs_max(matches, side=sm.params.side, label=sm.params.label, threshold=sm.params.threshold, style=style)
    save_chart(chart, sm.output.html, sm.output.png, ppi=style.ppi)
