"""Explanations and detection scores of the chosen latents of both seeds (rule autointerp)."""
import time

import pandas as pd
import torch

from saeseeds.common.atomic import write_parquet
from saeseeds.autointerp.explain_score import AutointerpConfig, explain_and_score
from saeseeds.autointerp.llm import CachedBackend, ReplyCache, make_backend
from saeseeds.common.logs import rule_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
START = time.perf_counter()
torch.set_num_threads(sm.threads)
with rule_log(sm.log[0]) as log:
    latents = pd.read_parquet(sm.input.latents)
    examples = pd.concat([pd.read_parquet(path) for path in sm.input.examples], ignore_index=True)
    backend = CachedBackend(make_backend(sm.params.backend, log=log), ReplyCache(sm.params.cache))
    keys = list(zip(latents["seed"].tolist(), latents["latent"].tolist()))
    table = explain_and_score(examples, keys, backend, AutointerpConfig(**sm.params.scoring), log=log)
    table = table.merge(latents, on=["seed", "latent"], how="left", validate="one_to_one")
    for seed, path in zip(sm.params.seeds, sm.output):
        write_parquet(table[table["seed"] == seed].reset_index(drop=True), path)
    log.info("wall %.0f s, CPU %.0f s (this process)", time.perf_counter() - START, time.process_time())
    log.info("model calls: %d answered from the cache %s, %d sent to %s", backend.hits, sm.params.cache, backend.misses, backend.identity)
