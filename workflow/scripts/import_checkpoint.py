"""Bring one existing checkpoint into the study as a seed folder (rule import_checkpoint)."""
from saeseeds.matching.external_sets import UNKNOWN_FIRING, import_checkpoint
from saeseeds.common.logs import rule_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    out = sm.output
    record = import_checkpoint(sm.params.reference, int(sm.wildcards.seed), cfg=out.cfg, weights=out.weights,
                               firing=out.firing, metrics=out.metrics)
    log.info("seed%s <- %s (%s layout, %d latents, commit %s)", sm.wildcards.seed, sm.params.reference,
             record["external"]["layout"], record["sae"]["num_latents"], record["external"]["commit"])
    if not record["firing_known"]:
        log.info(UNKNOWN_FIRING)
