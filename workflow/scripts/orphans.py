"""Only-in-base statistics over every subset of seeds (rule orphans)."""
import numpy as np

from saeseeds.common.atomic import write_parquet
from saeseeds.common.logs import rule_log
from saeseeds.stats.orphans import latent_table, pair_masks_from_files, subset_table

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    masks = pair_masks_from_files({tuple(pair): path for pair, path in zip(sm.params.pairs, sm.input.matches)})
    firing = {seed: np.load(path) for seed, path in zip(sm.params.seeds, sm.input.firing)}
    write_parquet(subset_table(masks), sm.output.subsets)
    write_parquet(latent_table(masks, firing), sm.output.latents)
    log.info("orphan statistics over %d seeds written", len(sm.params.seeds))
