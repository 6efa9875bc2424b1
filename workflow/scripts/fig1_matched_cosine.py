"""Fig 1: matched cosine histograms, encoder vs decoder (rule fig1_matched_cosine)."""
from saeseeds.figures.paper import fig1_matched_cosine
from saeseeds.figures.style import load_style, read_labelled, save_chart
from saeseeds.common.logs import rule_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]):
    style = load_style(sm.input.style)
    matches = read_labelled(list(zip(sm.params.labels, sm.input.matches)))
    chart = fig1_matched_cosine(matches, threshold=sm.params.threshold, style=style)
    save_chart(chart, sm.output.html, sm.output.png, ppi=style.ppi)
