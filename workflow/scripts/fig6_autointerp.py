"""Fig 6: detection scores of shared and orphan latents (rule fig6_autointerp)."""
import pandas as pd

from saeseeds.figures.autointerp import fig6_autointerp, with_sharing
from saeseeds.figures.style import load_style, save_chart
from saeseeds.common.logs import rule_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    style = load_style(sm.input.style)
    # One scores file per (site, sae, seed); the orphans file of a (site, sae) is listed once per seed.
    scores = pd.concat([pd.read_parquet(p).assign(label=l) for l, p in zip(sm.params.labels, sm.input.scores)], ignore_index=True)
    orphans = pd.concat([pd.read_parquet(p).assign(label=l) for l, p in dict(zip(sm.params.labels, sm.input.orphans)).items()],
                        ignore_index=True)
    frame = with_sharing(scores, orphans)
    save_chart(fig6_autointerp(frame, threshold=sm.params.threshold, style=style), sm.output.html, sm.output.png, ppi=style.ppi)
    log.info("Fig 6 from %d scored latents (mean score %.3f)", int(frame["score"].notna().sum()), frame["score"].mean())
