rule orphans:
    """Per set, from its pair matchings: only-in-base fractions for every subset of 2..N seeds and every base, per-latent
    sharing counts, and the stability table by original id (n_shared, partner and cosines in every other seed, firing).
    One job, since all three read the same matchings and firing (a job is 2-3 s of start-up for ~0.5 s of work)."""
    input:
        matches=lambda w: pair_matches(f"{RESULTS}/{w.model}/{w.dataset}/{w.hook}/{w.sae}", w.sae),
        firing=lambda w: [f"{RESULTS}/{w.model}/{w.dataset}/{w.hook}/{w.sae}/seed{s}/firing.npy" for s in seeds_of(w.sae)],
    output:
        subsets=f"{SAE_DIR}/orphans/subsets.parquet",
        latents=f"{SAE_DIR}/orphans/latents.parquet",
        stability=f"{SAE_DIR}/stability.parquet",
        stability_csv=f"{SAE_DIR}/stability.csv",
    log:
        f"logs/orphans/{SITE}/{{sae}}.log",
    benchmark:
        f"logs/benchmarks/orphans/{SITE}/{{sae}}.tsv",
    params:
        seeds=lambda w: seeds_of(w.sae),
        pairs=lambda w: pairs_of(w.sae),  # in the order of input.matches
    threads: 1
    resources:
        mem_mb=lambda w: estimates.orphans_mem_mb(config, w.sae),
        runtime=5,
        disk_mb=lambda w: 5 * estimates.orphans_disk_mb(config, w.sae),
    conda:
        CONDA_ENV
    script:
        "../scripts/orphans.py"
