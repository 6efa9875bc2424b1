"""Match the latents of seed pairs of one set (rules match, match_pairs_N); a matching not certified optimal fails
the rule before its parquet is written."""
from pathlib import Path

from saeseeds.common.logs import rule_log
from saeseeds.matching.checkpoints import load_dictionaries
from saeseeds.matching.match import match_dictionaries
from saeseeds.matching.matches_file import write_matches
from saeseeds.matching.screen_memory import reuse_screen_memory

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log, reuse_screen_memory():  # the stored screens' memory, touched once for every pair
    folders = {int(Path(f).parent.name.removeprefix("seed")): Path(f).parent for f in sm.input}
    loaded = {}  # the seeds of the current pair only: pairs come ordered by a, so a loads once per run of pairs
    for (a, b), out in zip(sm.params.pairs, sm.output):
        loaded = {s: loaded[s] if s in loaded else load_dictionaries(folders[s]) for s in (a, b)}
        (enc_a, dec_a), (enc_b, dec_b) = loaded[a], loaded[b]
        table, meta = match_dictionaries(
            enc_a, dec_a, enc_b, dec_b,
            threshold=sm.params.threshold, definition=sm.params.definition, device=sm.params.device,
            max_rounds=sm.params.max_rounds,
        )
        meta.update(seed_a=a, seed_b=b)
        write_matches(table, meta, out)  # raises UncertifiedMatching (one line) before writing anything
        log.info("seed%d vs seed%d: shared %.4f (%s definition)", a, b, table["shared"].mean(), sm.params.definition)
