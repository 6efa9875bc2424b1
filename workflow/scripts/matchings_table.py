"""Collect every SAE set's matchings comparison into one table (rule matchings_table)."""
from pathlib import Path

import pandas as pd

from saeseeds.common.atomic import atomic_write
from saeseeds.common.logs import rule_log
from saeseeds.stats.summary import table_html

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    frames = []
    for label, path in zip(sm.params.labels, sm.input):
        site, sae = label.rsplit("/", 1)
        frame = pd.read_parquet(path)
        frame.insert(0, "sae", sae)
        frame.insert(0, "site", site)
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    atomic_write(sm.output.csv, lambda tmp: table.to_csv(tmp, index=False, float_format="%.4f"))
    page = table_html(table, "Matchings of each set's first seed pair: fraction above the threshold and agreement with the exact Hungarian matching")
    atomic_write(sm.output.html, lambda tmp: Path(tmp).write_text(page))
    log.info("matchings:\n%s", table.to_string())
