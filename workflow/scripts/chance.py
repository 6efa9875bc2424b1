"""Chance levels of the shared fraction for one (site, sae) (rule chance)."""
import json
from pathlib import Path

from saeseeds.common.atomic import atomic_write
from saeseeds.stats.chance import chance_levels
from saeseeds.common.logs import rule_log

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    folders = sorted({str(Path(f).parent) for f in sm.input}, key=lambda p: int(Path(p).name.removeprefix("seed")))
    levels = chance_levels(folders, sm.params.seeds, threshold=sm.params.threshold, device=sm.params.device,
                           init=sm.params.init)
    atomic_write(sm.output[0], lambda tmp: Path(tmp).write_text(json.dumps(levels, indent=2, sort_keys=True) + "\n"))
    if not sm.params.init:
        log.info("skipped the init chance level: %s", levels["init_note"])
    log.info("chance levels: %s", levels)
