"""Train one SAE with one seed (rule train)."""
from pathlib import Path

import torch

from saeseeds.logs import rule_log
from saeseeds.study import sae_train_configs
from saeseeds.train import train_sae

sm = snakemake  # noqa: F821 (provided by Snakemake)
torch.set_num_threads(sm.threads)
with rule_log(sm.log[0]) as log:
    sae_cfg, train_cfg = sae_train_configs(sm.params.sae, sm.params.train)
    train_sae(
        sm.input[0],
        Path(sm.output.cfg).parent,
        sae_cfg,
        train_cfg,
        seed=int(sm.wildcards.seed),
        data_seed=sm.params.data_seed,
        log=log,
    )
