"""PW-MCC of every seed pair and the four matchings of the first pair (rule consistency)."""
from saeseeds.common.atomic import write_parquet
from saeseeds.stats.consistency import folders_by_seed, seed_of, set_consistency
from saeseeds.common.logs import rule_log
from saeseeds.stats.pwmcc import recovery_correlation

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    truth = {}
    if hasattr(sm.input, "truth"):  # synthetic sites: PW-MCC next to ground-truth recovery
        from saeseeds.synthetic.generator import load_ground_truth
        from saeseeds.synthetic.recovery import read_truth_matches

        truth = {"truth_dictionary": load_ground_truth(sm.input.truth)[0].dictionary,
                 "recovered": {seed_of(f): read_truth_matches(f)[1]["recovered_features_fraction"] for f in sm.input.truth_matches}}
    pairs, table = set_consistency(folders_by_seed(sm.input.checkpoints), tuple(sm.params.first_pair), sm.input.first_pair,
                                   sm.params.threshold, device=sm.params.device, **truth)
    write_parquet(pairs, sm.output.pwmcc)
    write_parquet(table, sm.output.matchings)
    log.info("PW-MCC per pair:\n%s", pairs.to_string())
    if truth:
        log.info("PW-MCC vs ground truth over seed pairs: %s", recovery_correlation(pairs))
    log.info("matchings of the first pair:\n%s", table.to_string())
