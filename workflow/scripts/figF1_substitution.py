"""Substitution score against matched cosine, shared vs orphan, with controls (rule figF1_substitution)."""
from saeseeds.figures.style import load_style, read_labelled, save_chart
from saeseeds.figures.functional import fig_substitution, substitution_means
from saeseeds.common.logs import rule_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    style = load_style(sm.input.style)
    frame = read_labelled(list(zip(sm.params.labels, sm.input.tables)))
    log.info("mean substitution scores of firing latents:\n%s", substitution_means(frame).to_string())
    save_chart(fig_substitution(frame, threshold=sm.params.threshold, style=style), sm.output.html, sm.output.png, ppi=style.ppi)
