"""Fig 4: shared fraction across SAE variants at the baseline's site (rule fig4_ablations)."""
import pandas as pd

from saeseeds.figures.style import load_style, save_chart
from saeseeds.figures.ablations import ablation_panels, fig4_ablations
from saeseeds.common.logs import rule_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    style = load_style(sm.input.style)
    summary = pd.read_parquet(sm.input.summary)
    panels = ablation_panels(summary, sm.params.baseline)
    log.info("ablation panels:\n%s", panels[["panel", "sae", "x_label", "shared_paper_mean"]].to_string() if len(panels) else "(none)")
    save_chart(fig4_ablations(summary, baseline=sm.params.baseline, style=style), sm.output.html, sm.output.png, ppi=style.ppi)
