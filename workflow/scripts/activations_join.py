"""Join the shards of several hooks' stores into the stores (rules activations_<i> when activations.shards > 1)."""
from saeseeds.activations.caching import ActivationConfig
from saeseeds.common.logs import rule_log
from saeseeds.activations.shards import join_shards

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    stores = join_shards(dict(zip(sm.params.hooks, sm.output)), list(sm.input), ActivationConfig(**sm.params.activations))
    log.info("joined %d shards into %d stores", len(sm.input), len(stores))
