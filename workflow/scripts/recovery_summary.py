"""The ground-truth table of the report: one row per synthetic (site, sae) (rule recovery_summary)."""
import pandas as pd

from saeseeds.common.atomic import atomic_write
from saeseeds.common.logs import rule_log
from saeseeds.synthetic.recovery import summarize

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    rows = []
    for label, latents, features, union in zip(sm.params.labels, sm.input.latents, sm.input.features, sm.input.union):
        site, sae = label.rsplit("/", 1)
        row = summarize(pd.read_parquet(latents), pd.read_parquet(features), pd.read_parquet(union))
        rows.append({"site": site, "sae": sae, **row})
    table = pd.DataFrame(rows)
    atomic_write(sm.output[0], lambda tmp: table.to_csv(tmp, index=False, float_format="%.4f"))
    log.info("recovery:\n%s", table.to_string())
