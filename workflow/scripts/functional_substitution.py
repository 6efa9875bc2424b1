"""Substitution test of every latent of seed a against its partner in seed b (rule functional_substitution)."""
from pathlib import Path

import pandas as pd
import torch

from saeseeds.common.atomic import write_parquet
from saeseeds.sae.coder import load_sae
from saeseeds.common.logs import rule_log
from saeseeds.activations.onthefly import open_on_the_fly
from saeseeds.activations.store import open_store
from saeseeds.functional.substitution import RowRange, substitution_table

sm = snakemake  # noqa: F821 (provided by Snakemake)
torch.set_num_threads(sm.threads)
with rule_log(sm.log[0]) as log:
    p = sm.params
    site = Path(sm.input.a[0]).parents[2]  # results/{model}/{dataset}/{hook}
    store = open_store(sm.input.store[0]) if p.on_the_fly is None else open_on_the_fly(
        site / "activations (on the fly)", hook=sm.wildcards.hook, **p.on_the_fly, log=log)
    train = RowRange(store.array, 0, min(p.fit_rows, store.n_train))
    heldout = RowRange(store.array, store.n_train, store.n_train + store.n_heldout)
    sae_a, sae_b = (load_sae(Path(files[0]).parent, device=p.device) for files in (sm.input.a, sm.input.b))
    table = substitution_table(sae_a, sae_b, pd.read_parquet(sm.input.matches), train, heldout, seed=p.seed)
    write_parquet(table, sm.output[0])
    fires = table[table["firing_rows"] > 0]
    log.info("mean substitution score of %d firing latents: partner %.3f (shared %.3f, orphan %.3f), random %.3f, best non-partner %.3f",
             len(fires), fires["score_partner"].mean(), fires.loc[fires["shared"], "score_partner"].mean(),
             fires.loc[~fires["shared"], "score_partner"].mean(), fires["score_random"].mean(), fires["score_nonpartner"].mean())
