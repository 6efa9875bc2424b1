rule stability:
    """The per-latent stability table by original id: n_shared, partner and cosines in every other seed, firing."""
    input:
        matches=lambda w: pair_matches(f"{RESULTS}/{w.model}/{w.dataset}/{w.hook}/{w.sae}", w.sae),
        firing=lambda w: [f"{RESULTS}/{w.model}/{w.dataset}/{w.hook}/{w.sae}/seed{s}/firing.npy" for s in seeds_of(w.sae)],
    output:
        parquet=f"{SAE_DIR}/stability.parquet",
        csv=f"{SAE_DIR}/stability.csv",
    log:
        f"logs/stability/{SITE}/{{sae}}.log",
    benchmark:
        f"logs/benchmarks/stability/{SITE}/{{sae}}.tsv",
    params:
        seeds=lambda w: seeds_of(w.sae),
        pairs=lambda w: pairs_of(w.sae),  # in the order of input.matches
    threads: 1
    resources:
        mem_mb=lambda w: estimates.orphans_mem_mb(config, w.sae),
        runtime=5,
        disk_mb=lambda w: 4 * estimates.orphans_disk_mb(config, w.sae),
    conda:
        CONDA_ENV
    script:
        "../scripts/stability.py"
