"""Recovery tables of one synthetic (site, sae) (rule recovery)."""
import pandas as pd

from saeseeds.common.atomic import write_parquet
from saeseeds.common.logs import rule_log
from saeseeds.synthetic.recovery import feature_table, latent_table, read_truth_matches, summarize, union_table
from saeseeds.synthetic.generator import load_ground_truth

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    truth, empirical = load_ground_truth(sm.input.truth)
    matches = {seed: read_truth_matches(path)[0] for seed, path in zip(sm.params.seeds, sm.input.truth_matches)}
    latents = latent_table(matches, pd.read_parquet(sm.input.orphans))
    features = feature_table(latents, truth.frequency, empirical, truth.parent)
    union = union_table(features, sm.params.seeds)
    write_parquet(latents, sm.output.latents)
    write_parquet(features, sm.output.features)
    write_parquet(union, sm.output.union)
    log.info("recovery: %s", summarize(latents, features, union))
