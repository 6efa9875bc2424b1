# Matching runs on config `match.device`; on cuda its jobs ask for a GPU (config `cluster.gpu_requests`).
MATCH_GPUS = scheduler.gpus(config, config["match"]["device"])


rule match:
    """Match the latents of two seeds (exact linear assignment on encoder and on decoder rows)."""
    input:
        a=lambda w: checkpoint_files(w, w.a),
        b=lambda w: checkpoint_files(w, w.b),
    output:
        f"{SAE_DIR}/matches/seed{{a}}-seed{{b}}.parquet",
    log:
        f"logs/match/{SITE}/{{sae}}/seed{{a}}-seed{{b}}.log",
    benchmark:
        f"logs/benchmarks/match/{SITE}/{{sae}}/seed{{a}}-seed{{b}}.tsv",
    params:
        threshold=config["match"]["threshold"],
        definition=config["match"]["definition"],
        device=config["match"]["device"],
        max_rounds=config["match"]["max_rounds"],
    threads: 1
    resources:
        mem_mb=lambda w, attempt: scheduler.scaled(estimates.match_mem_mb(config, w.sae), attempt),
        runtime=lambda w, attempt: scheduler.scaled(estimates.match_minutes(config, w.model, w.sae), attempt),
        disk_mb=lambda w: estimates.match_disk_mb(config, w.sae),
        cpus_per_task=1,
        gpu=MATCH_GPUS,
        **(scheduler.gpu_model_resources(config) if MATCH_GPUS else {}),
    conda:
        CONDA_ENV
    script:
        "../scripts/match.py"


rule chance:
    """Chance levels of the shared fraction: the same seeds untrained, and the trained ones under a random matching."""
    input:
        lambda w: [f for s in seeds_of(w.sae)[: CHANCE_SEEDS] for f in checkpoint_files(w, s)],
    output:
        f"{SAE_DIR}/chance.json",
    log:
        f"logs/chance/{SITE}/{{sae}}.log",
    benchmark:
        f"logs/benchmarks/chance/{SITE}/{{sae}}.tsv",
    params:
        seeds=lambda w: seeds_of(w.sae)[: CHANCE_SEEDS],
        threshold=config["match"]["threshold"],
        device=config["match"]["device"],
        init=lambda w: not study.is_external(config, w.sae),  # someone else's init is unknown: random matching only
    threads: 1
    resources:
        mem_mb=lambda w, attempt: scheduler.scaled(estimates.match_mem_mb(config, w.sae), attempt),
        runtime=lambda w, attempt: scheduler.scaled(3 * estimates.match_minutes(config, w.model, w.sae), attempt),
        cpus_per_task=1,
        gpu=MATCH_GPUS,
        **(scheduler.gpu_model_resources(config) if MATCH_GPUS else {}),
    conda:
        CONDA_ENV
    script:
        "../scripts/chance.py"
