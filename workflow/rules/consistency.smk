# Consistency the way the field now reports it (issue 18): PW-MCC of every seed pair (Song et al. 2025) and,
# on each set's first seed pair, greedy / max-cos / Sinkhorn matchings side by side with the exact Hungarian one.
# One job per SAE set. The seed-level jackknife intervals are computed by the summary rule from these files.
from saeseeds.matching import alternatives as matchings_module
def consistency_targets():
    targets = [f"{d}/consistency/{name}.parquet" for d in sae_dirs() for name in ("pwmcc", "matchings")]
    return targets + [f"{RESULTS}/matchings.csv", f"{RESULTS}/matchings.html"]


def consistency_truth(wildcards):
    """On a synthetic site, each seed's truth matching and the true dictionary (PW-MCC vs ground truth)."""
    if wildcards.model not in SYNTHETIC_MODELS:
        return {}
    d = f"{RESULTS}/{wildcards.model}/{wildcards.dataset}/{wildcards.hook}"
    return {
        "truth_matches": [f"{d}/{wildcards.sae}/truth/seed{s}.parquet" for s in seeds_of(wildcards.sae)],
        "truth": f"{d}/ground_truth.npz",
    }


rule consistency:
    """PW-MCC (mean matched |cos| of decoder rows, exact Hungarian) of every seed pair; other matchings on the first pair."""
    input:
        unpack(consistency_truth),
        checkpoints=lambda w: [f for s in seeds_of(w.sae) for f in checkpoint_files(w, s)],
        first_pair=lambda w: f"{RESULTS}/{w.model}/{w.dataset}/{w.hook}/{w.sae}/matches/seed{pairs_of(w.sae)[0][0]}-seed{pairs_of(w.sae)[0][1]}.parquet",
    output:
        pwmcc=f"{SAE_DIR}/consistency/pwmcc.parquet",
        matchings=f"{SAE_DIR}/consistency/matchings.parquet",
    log:
        f"logs/consistency/{SITE}/{{sae}}.log",
    benchmark:
        f"logs/benchmarks/consistency/{SITE}/{{sae}}.tsv",
    params:
        seeds=lambda w: seeds_of(w.sae),
        first_pair=lambda w: list(pairs_of(w.sae)[0]),
        threshold=config["match"]["threshold"],
        device=config["match"]["device"],
    threads: 1
    resources:
        mem_mb=lambda w, attempt: scheduler.scaled(
            max(estimates.match_mem_mb(config, w.model, w.sae), matchings_module.mem_mb(config["saes"][w.sae].get("num_latents", estimates.EXTERNAL_LATENTS))), attempt),
        runtime=lambda w, attempt: scheduler.scaled(
            len(pairs_of(w.sae)) * estimates.match_minutes(config, w.model, w.sae)
            + matchings_module.minutes(config["saes"][w.sae].get("num_latents", estimates.EXTERNAL_LATENTS)), attempt),
        cpus_per_task=1,
        gpu=MATCH_GPUS,
        **(scheduler.gpu_model_resources(config) if MATCH_GPUS else {}),
    conda:
        CONDA_ENV
    script:
        "../scripts/consistency.py"


rule matchings_table:
    """One table of the four matchings (Hungarian, greedy, max-cos, Sinkhorn) for every SAE set's first seed pair."""
    input:
        [f"{d}/consistency/matchings.parquet" for d in sae_dirs()],
    output:
        csv=f"{RESULTS}/matchings.csv",
        html=report(f"{RESULTS}/matchings.html", caption="../report/matchings.rst", category="Summary"),
    log:
        "logs/matchings_table.log",
    benchmark:
        "logs/benchmarks/matchings_table.tsv",
    params:
        labels=site_sae_labels(),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/matchings_table.py"
