"""Cache one shard (a range of contexts) of several hooks' stores (rules activations_<i>_shard)."""
import torch

from saeseeds.activations.caching import ActivationConfig, SiteSource
from saeseeds.common.logs import rule_log
from saeseeds.activations.shards import cache_shard

sm = snakemake  # noqa: F821 (provided by Snakemake)
torch.set_num_threads(sm.threads)
with rule_log(sm.log[0]) as log:
    cache_shard(
        sm.output[0],
        sm.params.hooks,
        shard=int(sm.wildcards.shard),
        shards=sm.params.shards,
        source=SiteSource.from_config(sm.params.model, sm.params.dataset),
        cfg=ActivationConfig(**sm.params.activations),
        log=log,
    )
