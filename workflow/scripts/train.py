"""Train one SAE variant for a group of seeds, stacked (rules train_seeds_*)."""
from pathlib import Path

import torch

from saeseeds.logs import rule_log
from saeseeds.study import sae_train_configs
from saeseeds.train import train_saes

sm = snakemake  # noqa: F821 (provided by Snakemake)
torch.set_num_threads(sm.threads)
with rule_log(sm.log[0]) as log:
    sae_cfg, train_cfg = sae_train_configs(sm.params.sae, sm.params.train)
    train_saes(
        sm.input[0],
        [Path(path).parent for path in sm.output.cfg],
        sae_cfg,
        train_cfg,
        seeds=sm.params.seeds,
        data_seed=sm.params.data_seed,
        log=log,
    )
