"""Write the study's summary table (rule summary)."""
from saeseeds.common.logs import rule_log
from saeseeds.stats.summary import write_summary

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    out = sm.output
    table = write_summary(sm.params.entries, sm.params.threshold, csv=out.csv, parquet=out.parquet, markdown=out.markdown, html=out.html)
    log.info("summary:\n%s", table.to_string())
