"""Loss recovered of every seed of every measured SAE variant at one site (rules functional_loss_*)."""
from pathlib import Path

import torch

from saeseeds.common.atomic import write_parquet
from saeseeds.functional.loss import heldout_token_ids, loss_recovered, sae_splice
from saeseeds.sae.coder import load_sae
from saeseeds.common.logs import rule_log
from saeseeds.activations.models import load_model
from saeseeds.activations.onthefly import open_on_the_fly
from saeseeds.activations.store import open_store

sm = snakemake  # noqa: F821 (provided by Snakemake)
torch.set_num_threads(sm.threads)
with rule_log(sm.log[0]) as log:
    p = sm.params
    source = p.on_the_fly  # None: the site's cached store is an input
    if source is None:
        store = open_store(sm.input.store[0])
        model, _ = load_model(p.model["source"], revision=p.model.get("revision", "main"), dtype=p.model.get("dtype", "float32"), device=p.device)
    else:  # the on-the-fly store holds the model it runs
        store = open_on_the_fly(Path(p.saes[0]["dir"]).parent / "activations (on the fly)", hook=p.hook, **source, log=log)
        model = store.array.model.to(p.device)
    ids = heldout_token_ids(store, p.contexts)
    splices = {(e["sae"], seed): sae_splice(load_sae(Path(e["dir"]) / f"seed{seed}", device=p.device)) for e in p.saes for seed in e["seeds"]}
    table = loss_recovered(model, p.hook, ids, splices, batch_size=p.batch_size,
                           keep_first_position=p.keep_first_position, log=log)
    for entry, path in zip(p.saes, sm.output):
        write_parquet(table[table["sae"] == entry["sae"]].reset_index(drop=True), path)
    log.info("loss recovered on %d held-out contexts:\n%s", len(ids), table.to_string())
