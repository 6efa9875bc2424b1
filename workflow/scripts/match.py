"""Match the latents of two seeds (rule match); a matching not certified optimal fails the rule, no parquet."""
from pathlib import Path

from saeseeds.common.logs import rule_log
from saeseeds.matching.checkpoints import load_dictionaries
from saeseeds.matching.match import match_dictionaries
from saeseeds.matching.matches_file import write_matches

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    enc_a, dec_a = load_dictionaries(Path(sm.input.a[0]).parent)
    enc_b, dec_b = load_dictionaries(Path(sm.input.b[0]).parent)
    table, meta = match_dictionaries(
        enc_a, dec_a, enc_b, dec_b,
        threshold=sm.params.threshold, definition=sm.params.definition, device=sm.params.device,
        max_rounds=sm.params.max_rounds,
    )
    meta.update(seed_a=int(sm.wildcards.a), seed_b=int(sm.wildcards.b))
    write_matches(table, meta, sm.output[0])  # raises UncertifiedMatching (one line) before writing anything
    log.info("seed%s vs seed%s: shared %.4f (%s definition)", sm.wildcards.a, sm.wildcards.b,
             table["shared"].mean(), sm.params.definition)
