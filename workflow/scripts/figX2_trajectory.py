"""Fig X2: consistency over training next to the separate-run token ablation (rule figX2_trajectory)."""
import pandas as pd

from saeseeds.figures.style import load_style, save_chart
from saeseeds.figures.trajectory import fig_x2_trajectory, separate_runs
from saeseeds.common.logs import rule_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    style = load_style(sm.input.style)
    trajectories = pd.concat([pd.read_parquet(p).assign(label=f"{label}: checkpoints of one run")
                              for p, label in zip(sm.input.trajectories, sm.params.labels)], ignore_index=True)
    separate = separate_runs(pd.read_parquet(sm.input.summary), sm.params.baseline)
    log.info("checkpoints:\n%s\nseparate runs:\n%s", trajectories.to_string(), separate.to_string() if len(separate) else "(none)")
    save_chart(fig_x2_trajectory(trajectories, separate, style=style), sm.output.html, sm.output.png, ppi=style.ppi)
