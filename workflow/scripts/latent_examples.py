"""Example windows of the chosen latents of one seed (rule latent_examples)."""
from pathlib import Path

import pandas as pd
import torch

from saeseeds.common.atomic import write_parquet
from saeseeds.autointerp.examples import ExampleConfig, collect_examples, token_decoder
from saeseeds.sae.coder import load_sae
from saeseeds.common.logs import rule_log
from saeseeds.activations.models import load_tokenizer
from saeseeds.activations.onthefly import open_on_the_fly
from saeseeds.activations.store import open_store

sm = snakemake  # noqa: F821 (provided by Snakemake)
torch.set_num_threads(sm.threads)
with rule_log(sm.log[0]) as log:
    seed = int(sm.wildcards.seed)
    latents = pd.read_parquet(sm.input.latents)
    tokenizer = load_tokenizer(sm.params.model["source"], revision=sm.params.model.get("revision", "main"))
    source = sm.params.on_the_fly  # None: the site's cached store is an input
    site = Path(sm.input.checkpoint[0]).parents[2]  # results/{model}/{dataset}/{hook}
    store = open_store(sm.input.store[0]) if source is None else open_on_the_fly(site / "activations (on the fly)", hook=sm.wildcards.hook, **source, log=log)
    table = collect_examples(
        store, load_sae(Path(sm.input.checkpoint[0]).parent, device=sm.params.device),
        latents.loc[latents["seed"] == seed, "latent"].tolist(), seed=seed, cfg=ExampleConfig(**sm.params.examples),
        decode=token_decoder(tokenizer), log=log,
    )
    write_parquet(table, sm.output[0])
