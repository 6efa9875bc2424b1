rule summary:
    """One row per (site, sae): health, shared fraction (three labellings), PW-MCC, chance, only-in-base, offset fit; seed-jackknife intervals."""
    input:
        metrics=[f"{d}/seed{s}/metrics.json" for d, (_, sae) in zip(sae_dirs(), SITE_SAES) for s in seeds_of(sae)],
        matches=[m for d, (_, sae) in zip(sae_dirs(), SITE_SAES) for m in pair_matches(d, sae)],
        subsets=[f"{d}/orphans/subsets.parquet" for d in sae_dirs()],
        chance=[f"{d}/chance.json" for d in sae_dirs()],
        functional=lambda w: functional_summary_inputs(),
        pwmcc=[f"{d}/consistency/pwmcc.parquet" for d in sae_dirs()],
    output:
        csv=report(f"{RESULTS}/summary.csv", caption="../report/summary.rst", category="Summary"),
        parquet=f"{RESULTS}/summary.parquet",
        markdown=f"{RESULTS}/summary.md",
        html=report(f"{RESULTS}/summary.html", caption="../report/summary.rst", category="Summary"),
    log:
        "logs/summary.log",
    benchmark:
        "logs/benchmarks/summary.tsv",
    params:
        entries=lambda w: [{"dir": d, "seeds": seeds_of(sae), **functional_entry(site, sae)} for d, (site, sae) in zip(sae_dirs(), SITE_SAES)],
        threshold=config["match"]["threshold"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        CONDA_ENV
    script:
        "../scripts/summary.py"
