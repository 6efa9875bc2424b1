"""Fig 5: shared fraction by layer, MLP vs residual stream (rule fig5_layers)."""
import pandas as pd

from saeseeds.figures.style import load_style, save_chart
from saeseeds.figures.ablations import fig5_layers
from saeseeds.common.logs import rule_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]):
    style = load_style(sm.input.style)
    save_chart(fig5_layers(pd.read_parquet(sm.input.summary), style=style), sm.output.html, sm.output.png, ppi=style.ppi)
