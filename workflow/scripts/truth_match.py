"""Match one seed's decoder to the true dictionary (rule truth_match)."""
from pathlib import Path

from saeseeds.matching.checkpoints import load_dictionaries
from saeseeds.common.logs import rule_log
from saeseeds.synthetic.recovery import match_truth, write_truth_matches
from saeseeds.synthetic.generator import load_ground_truth

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    _, decoder = load_dictionaries(Path(sm.input.checkpoint[0]).parent)
    truth, _ = load_ground_truth(sm.input.truth)
    table, meta = match_truth(decoder, truth.dictionary, threshold=sm.params.threshold, device=sm.params.device)
    meta["seed"] = int(sm.wildcards.seed)
    write_truth_matches(table, meta, sm.output[0])
    log.info("seed%s: %d latents recover a true feature (%.1f%% of %d features)", sm.wildcards.seed,
             meta["recovered_latents"], 100 * meta["recovered_features_fraction"], meta["n_true"])
