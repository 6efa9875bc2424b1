"""Write the study's summary table (rule summary)."""
from saeseeds.logs import rule_log
from saeseeds.summary import write_summary

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    table = write_summary(sm.params.sae_dirs, sm.params.seeds, sm.params.threshold, sm.output[0])
    log.info("summary:\n%s", table.to_string())
