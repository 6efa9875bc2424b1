"""Choose the latents autointerp explains (rule autointerp_latents)."""
import numpy as np
import pandas as pd

from saeseeds.common.atomic import write_parquet
from saeseeds.autointerp.examples import select_latents
from saeseeds.common.logs import rule_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    table = select_latents(pd.read_parquet(sm.input.matches), np.load(sm.input.firing), seeds=tuple(sm.params.seeds),
                           n_latents=sm.params.n_latents, rng_seed=sm.params.seed)
    write_parquet(table, sm.output[0])
    log.info("%d latents per seed chosen, %d of them shared", len(table) // 2, int(table["shared"].sum()) // 2)
