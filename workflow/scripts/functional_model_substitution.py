"""Substitution through the model on a cosine-stratified sample of latents (rule functional_model_substitution)."""
from pathlib import Path

import pandas as pd
import torch

from saeseeds.common.atomic import write_parquet
from saeseeds.sae.coder import load_sae
from saeseeds.common.logs import rule_log
from saeseeds.functional.model_substitution import model_substitution, sample_latents
from saeseeds.activations.models import load_model
from saeseeds.activations.onthefly import open_on_the_fly
from saeseeds.activations.store import open_store

sm = snakemake  # noqa: F821 (provided by Snakemake)
torch.set_num_threads(sm.threads)
with rule_log(sm.log[0]) as log:
    p = sm.params
    site = Path(sm.input.a[0]).parents[2]  # results/{model}/{dataset}/{hook}
    if p.on_the_fly is None:
        store = open_store(sm.input.store[0])
        model, _ = load_model(p.model["source"], revision=p.model.get("revision", "main"), dtype=p.model.get("dtype", "float32"), device=p.device)
    else:  # the on-the-fly store holds the model it runs
        store = open_on_the_fly(site / "activations (on the fly)", hook=sm.wildcards.hook, **p.on_the_fly, log=log)
        model = store.array.model.to(p.device)
    sae_a, sae_b = (load_sae(Path(files[0]).parent, device=p.device) for files in (sm.input.a, sm.input.b))
    sample = sample_latents(pd.read_parquet(sm.input.substitution), p.n_latents, seed=p.seed)
    log.info("%d latents sampled (stratified by matched decoder cosine), %d shared", len(sample), int(sample["shared"].sum()))
    table = model_substitution(model, sm.wildcards.hook, store, sae_a, sae_b, sample, contexts_per_latent=p.contexts, log=log)
    write_parquet(table, sm.output[0])
