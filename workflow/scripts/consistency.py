"""PW-MCC of every seed pair and the four matchings of the first pair (rule consistency)."""
from pathlib import Path

import pandas as pd

from saeseeds.atomic import write_parquet
from saeseeds.checkpoints import load_dictionaries
from saeseeds.logs import rule_log
from saeseeds.matchings import compare_matchings
from saeseeds.pwmcc import add_truth, pair_table, recovery_correlation, truth_mcc

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    folders = sorted({Path(f).parent for f in sm.input.checkpoints})
    dictionaries = {int(folder.name.removeprefix("seed")): load_dictionaries(folder) for folder in folders}
    device = sm.params.device
    pairs = pair_table({s: dec for s, (_, dec) in dictionaries.items()}, device=device)
    if hasattr(sm.input, "truth"):
        from saeseeds.recovery import read_truth_matches
        from saeseeds.synthetic import load_ground_truth

        truth, _ = load_ground_truth(sm.input.truth)
        recovered = {int(Path(f).stem.removeprefix("seed")): read_truth_matches(f)[1]["recovered_features_fraction"]
                     for f in sm.input.truth_matches}
        mcc = {s: truth_mcc(dec, truth.dictionary, device=device) for s, (_, dec) in dictionaries.items()}
        pairs = add_truth(pairs, recovered, mcc)
        log.info("PW-MCC vs ground truth over seed pairs: %s", recovery_correlation(pairs))
    write_parquet(pairs, sm.output.pwmcc)
    log.info("PW-MCC per pair:\n%s", pairs.to_string())
    a, b = sm.params.first_pair
    table = compare_matchings(*dictionaries[a], *dictionaries[b], pd.read_parquet(sm.input.first_pair),
                              sm.params.threshold, device=device)
    table.insert(0, "seed_b", b)
    table.insert(0, "seed_a", a)
    write_parquet(table, sm.output.matchings)
    log.info("matchings of seed%d vs seed%d:\n%s", a, b, table.to_string())
