"""Train one SAE variant for a group of seeds, stacked (rules train_seeds_*)."""
from pathlib import Path

import torch

from saeseeds.common.logs import rule_log
from saeseeds.activations.onthefly import open_on_the_fly
from saeseeds.config.study import sae_train_configs
from saeseeds.sae.train import train_saes

sm = snakemake  # noqa: F821 (provided by Snakemake)
torch.set_num_threads(sm.threads)
with rule_log(sm.log[0]) as log:
    sae_cfg, train_cfg = sae_train_configs(sm.params.sae, sm.params.train)
    source = sm.params.on_the_fly  # None: the site's cached store is the input
    site = Path(sm.output.cfg[0]).parents[2]  # results/{model}/{dataset}/{hook}
    store = sm.input[0] if source is None else open_on_the_fly(site / "activations (on the fly)", hook=sm.wildcards.hook, **source, log=log)
    train_saes(
        store,
        [Path(path).parent for path in sm.output.cfg],
        sae_cfg,
        train_cfg,
        seeds=sm.params.seeds,
        data_seed=sm.params.data_seed,
        log=log,
    )
