"""Per-latent stability table of one (site, sae), parquet and CSV (rule stability)."""
from pathlib import Path

from saeseeds.common.logs import rule_log
from saeseeds.stats.stability import stability_from_files, write_stability

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    seeds = list(sm.params.seeds)
    folders = [str(Path(sm.input.firing[i]).parent) for i in range(len(seeds))]
    matches = {tuple(pair): path for pair, path in zip(sm.params.pairs, sm.input.matches)}
    table, meta = stability_from_files(folders, seeds, matches, dict(zip(seeds, sm.input.firing)))
    write_stability(table, meta, parquet=sm.output.parquet, csv=sm.output.csv)
    log.info("stability table: %d latents of %d seeds, %d shared with every other seed",
             len(table), len(seeds), int((table["n_shared"] == len(seeds) - 1).sum()))
