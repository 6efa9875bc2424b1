"""Fig X1: ground-truth recovery on synthetic sites (rule figX1_recovery)."""
from saeseeds.figures.style import load_style, read_labelled, save_chart
from saeseeds.common.logs import rule_log
from saeseeds.figures.recovery import figX1_recovery

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]):
    style = load_style(sm.input.style)
    tables = {key: read_labelled(list(zip(sm.params.labels, sm.input[key]))) for key in ("latents", "features", "union")}
    save_chart(figX1_recovery(**tables, style=style), sm.output.html, sm.output.png, ppi=style.ppi)
