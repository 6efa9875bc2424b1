"""Fig A1: shared fraction by Hungarian vs max-cos labelling (rule figA1_labellings)."""
import pandas as pd

from saeseeds.figures.style import load_style, save_chart
from saeseeds.figures.ablations import fig_a1_labellings
from saeseeds.common.logs import rule_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]):
    style = load_style(sm.input.style)
    save_chart(fig_a1_labellings(pd.read_parquet(sm.input.summary), style=style), sm.output.html, sm.output.png, ppi=style.ppi)
