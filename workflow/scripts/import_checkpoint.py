"""Bring one existing checkpoint into the study as a seed folder (rule import_checkpoint)."""
from saeseeds.activations.store import open_store
from saeseeds.common.logs import rule_log
from saeseeds.matching.external_sets import import_checkpoint

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    out = sm.output
    heldout = open_store(sm.input.store[0]).heldout() if sm.input.store else None
    record = import_checkpoint(sm.params.reference, int(sm.wildcards.seed), cfg=out.cfg, weights=out.weights,
                               firing=out.firing, metrics=out.metrics, heldout=heldout, no_rows=sm.params.no_rows)
    log.info("seed%s <- %s (%s layout, %d latents, commit %s)", sm.wildcards.seed, sm.params.reference,
             record["external"]["layout"], record["sae"]["num_latents"], record["external"]["commit"])
    log.info("firing frequencies: %s", record["firing_source"])
