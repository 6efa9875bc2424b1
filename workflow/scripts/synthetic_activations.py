"""Generate a synthetic site's activations and ground truth (rule synthetic_activations)."""
from saeseeds.common.logs import rule_log
from saeseeds.synthetic.generator import SyntheticConfig, write_synthetic_store

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    acts = sm.params.activations
    store = write_synthetic_store(
        sm.output.store, sm.output.truth, SyntheticConfig.from_dict(sm.params.synthetic),
        n_tokens=acts["max_tokens"], n_heldout=acts["heldout_tokens"], dtype=acts.get("dtype", "float16"),
        attrs={"model": sm.wildcards.model, "dataset": sm.wildcards.dataset, "hook": sm.wildcards.hook},
    )
    log.info("%d synthetic rows of d=%d; %.3f active features per row", store.attrs["n_tokens"], store.d_in,
             store.attrs["mean_active_observed"])
