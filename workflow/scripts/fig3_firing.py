"""Fig 3: firing frequency by number of seeds sharing a latent (rule fig3_firing)."""
from saeseeds.figures.paper import fig3_firing
from saeseeds.figures.style import load_style, read_labelled, save_chart
from saeseeds.common.logs import rule_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    for label in sm.params.left_out:
        log.info("left out %s: an external set's firing frequencies need activations through its own encoder "
                 "(a set with no site has none)", label)
    style = load_style(sm.input.style)
    latents = read_labelled(list(zip(sm.params.labels, sm.input.latents)))
    save_chart(fig3_firing(latents, base=sm.params.base, style=style), sm.output.html, sm.output.png, ppi=style.ppi)
