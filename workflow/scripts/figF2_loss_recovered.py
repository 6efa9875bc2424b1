"""Loss recovered per SAE variant next to its shared fraction (rule figF2_loss_recovered)."""
import pandas as pd

from saeseeds.figures.style import load_style, save_chart
from saeseeds.figures.functional import fig_loss_recovered
from saeseeds.common.logs import rule_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    style = load_style(sm.input.style)
    summary = pd.read_parquet(sm.input.summary)
    measured = summary[summary["loss_recovered"].notna()] if "loss_recovered" in summary else summary.iloc[:0]
    log.info("loss recovered:\n%s", measured[["site", "sae", "shared_paper_mean", "loss_recovered"]].to_string() if len(measured) else "(none)")
    save_chart(fig_loss_recovered(summary, style=style), sm.output.html, sm.output.png, ppi=style.ppi)
