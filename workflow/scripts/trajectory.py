"""Match the seeds of one SAE set at each checkpoint along training (rule trajectory)."""
from pathlib import Path

from saeseeds.common.logs import rule_log
from saeseeds.stats.trajectory import trajectory_table, write_trajectory

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    sae_dir = Path(sm.output.parquet).parent
    table = trajectory_table(sae_dir, sm.params.seeds, threshold=sm.params.threshold, device=sm.params.device, log=log)
    write_trajectory(table, parquet=sm.output.parquet, csv=sm.output.csv)
