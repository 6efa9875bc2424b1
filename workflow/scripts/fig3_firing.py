"""Fig 3: firing frequency by number of seeds sharing a latent (rule fig3_firing)."""
from saeseeds.common.logs import rule_log
from saeseeds.figures.paper import fig3_firing
from saeseeds.figures.style import load_style, read_labelled, save_chart

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    style = load_style(sm.input.style)
    latents = read_labelled(list(zip(sm.params.labels, sm.input.latents)))
    base = latents[latents["base"] == sm.params.base]
    unknown = base.groupby("label", sort=False)["firing_frequency"].apply(lambda f: f.isna().any())
    for label in unknown[unknown].index:
        log.info("left out %s: its base seed's firing frequencies are unknown (an external set whose encoder could "
                 "not be run on the site's rows, or one with no site: see its import_checkpoint log)", label)
    latents = latents[~latents["label"].isin(unknown[unknown].index)]
    save_chart(fig3_firing(latents, base=sm.params.base, style=style), sm.output.html, sm.output.png, ppi=style.ppi)
