"""Cache the activations of several hooks of one model and dataset, one forward pass for all (rules activations_*)."""
import torch

from saeseeds.activations.caching import ActivationConfig, SiteSource, cache_activations_multi
from saeseeds.common.logs import rule_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
torch.set_num_threads(sm.threads)
with rule_log(sm.log[0]) as log:
    cache_activations_multi(
        dict(zip(sm.params.hooks, sm.output)),  # output i is the store of hook i
        source=SiteSource.from_config(sm.params.model, sm.params.dataset),
        cfg=ActivationConfig(**sm.params.activations),
        log=log,
    )
