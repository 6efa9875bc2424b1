"""Table 1: explanations of latent pairs at several alignment levels (rule table1_explanations)."""
import pandas as pd

from saeseeds.figures.autointerp import table1, write_table1
from saeseeds.common.logs import rule_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    frames = [pd.read_parquet(path).assign(label=label) for label, path in zip(sm.params.labels, sm.input.scores)]
    table = table1(pd.concat(frames, ignore_index=True), per_level=sm.params.per_level)
    write_table1(table, sm.output.csv, sm.output.html)
    log.info("Table 1: %d latent pairs", len(table))
