"""Cache one shard (a range of contexts) of several hooks' stores (rules activations_<i>_shard)."""
import torch

from saeseeds.activations import ActivationConfig
from saeseeds.logs import rule_log
from saeseeds.shards import cache_shard

sm = snakemake  # noqa: F821 (provided by Snakemake)
torch.set_num_threads(sm.threads)
with rule_log(sm.log[0]) as log:
    model, dataset = sm.params.model, sm.params.dataset
    cache_shard(
        sm.output[0],
        sm.params.hooks,
        shard=int(sm.wildcards.shard),
        shards=sm.params.shards,
        model_source=model["source"],
        revision=model.get("revision", "main"),
        model_dtype=model.get("dtype", "float32"),
        dataset_source=dataset["source"],
        split=dataset.get("split", "train"),
        text_field=dataset.get("text_field", "text"),
        cfg=ActivationConfig(**sm.params.activations),
        log=log,
    )
