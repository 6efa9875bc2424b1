"""Only-in-base statistics over every subset of seeds (rule orphans)."""
import numpy as np

from saeseeds.logs import rule_log
from saeseeds.orphans import latent_table, masks_from_matches, subset_table, write_table

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    seeds = sm.params.seeds
    masks = masks_from_matches(sm.input.matches)
    firing = {seed: np.load(path) for seed, path in zip(seeds, sm.input.firing)}
    write_table(subset_table(masks), sm.output.subsets)
    write_table(latent_table(masks, firing), sm.output.latents)
    log.info("orphan statistics over %d seeds written", len(seeds))
