"""Only-in-base statistics over every subset of seeds and the per-latent stability table of one (site, sae) (rule orphans)."""
from pathlib import Path

import numpy as np

from saeseeds.common.atomic import write_parquet
from saeseeds.common.logs import rule_log
from saeseeds.matching.matches_file import read_matches
from saeseeds.stats.orphans import latent_table, pair_masks, subset_table
from saeseeds.stats.stability import stability_from_tables, write_stability

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    seeds = list(sm.params.seeds)
    matches = {tuple(pair): path for pair, path in zip(sm.params.pairs, sm.input.matches)}
    tables = {pair: read_matches(path) for pair, path in matches.items()}  # each file read once, for both tables
    masks = pair_masks(tables, names=matches)
    firing = {seed: np.load(path) for seed, path in zip(seeds, sm.input.firing)}
    write_parquet(subset_table(masks), sm.output.subsets)
    write_parquet(latent_table(masks, firing), sm.output.latents)
    log.info("orphan statistics over %d seeds written", len(seeds))

    folders = [str(Path(path).parent) for path in sm.input.firing]
    table, meta = stability_from_tables(folders, seeds, tables, firing)
    write_stability(table, meta, parquet=sm.output.stability, csv=sm.output.stability_csv)
    log.info("stability table: %d latents of %d seeds, %d shared with every other seed",
             len(table), len(seeds), int((table["n_shared"] == len(seeds) - 1).sum()))
