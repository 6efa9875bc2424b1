"""Cache the activations of several hooks of one model and dataset, one forward pass for all (rules activations_*)."""
import torch

from saeseeds.activations import ActivationConfig, cache_activations_multi
from saeseeds.logs import rule_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
torch.set_num_threads(sm.threads)
with rule_log(sm.log[0]) as log:
    model, dataset = sm.params.model, sm.params.dataset
    cache_activations_multi(
        dict(zip(sm.params.hooks, sm.output)),  # output i is the store of hook i
        model_source=model["source"],
        revision=model.get("revision", "main"),
        model_dtype=model.get("dtype", "float32"),
        dataset_source=dataset["source"],
        split=dataset.get("split", "train"),
        text_field=dataset.get("text_field", "text"),
        cfg=ActivationConfig(**sm.params.activations),
        log=log,
    )
