rule orphans:
    """Only-in-base fractions for every subset of 2..N seeds and every base; per-latent sharing counts."""
    input:
        matches=lambda w: pair_matches(f"{RESULTS}/{w.model}/{w.dataset}/{w.hook}/{w.sae}"),
        firing=lambda w: [f"{RESULTS}/{w.model}/{w.dataset}/{w.hook}/{w.sae}/seed{s}/firing.npy" for s in SEEDS],
    output:
        subsets=f"{SAE_DIR}/orphans/subsets.parquet",
        latents=f"{SAE_DIR}/orphans/latents.parquet",
    log:
        f"logs/orphans/{SITE}/{{sae}}.log",
    params:
        seeds=SEEDS,
        pairs=PAIRS,  # in the order of input.matches
    threads: 1
    resources:
        mem_mb=lambda w: estimates.orphans_mem_mb(config, w.sae),
        runtime=5,
        disk_mb=lambda w: estimates.orphans_disk_mb(config, w.sae),
    script:
        "../scripts/orphans.py"


rule summary:
    """One row per (site, sae): training health, shared fraction (both definitions), only-in-base at N seeds."""
    input:
        metrics=[f"{d}/seed{s}/metrics.json" for d in sae_dirs() for s in SEEDS],
        matches=[m for d in sae_dirs() for m in pair_matches(d)],
        subsets=[f"{d}/orphans/subsets.parquet" for d in sae_dirs()],
    output:
        report(f"{RESULTS}/summary.csv", caption="../report/summary.rst", category="Summary"),
    log:
        "logs/summary.log",
    params:
        sae_dirs=sae_dirs(),
        seeds=SEEDS,
        threshold=config["match"]["threshold"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/summary.py"
