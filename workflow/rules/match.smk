rule match:
    """Match the latents of two seeds (exact linear assignment on encoder and on decoder rows)."""
    input:
        a=lambda w: checkpoint_files(w, w.a),
        b=lambda w: checkpoint_files(w, w.b),
    output:
        f"{SAE_DIR}/matches/seed{{a}}-seed{{b}}.parquet",
    log:
        f"logs/match/{SITE}/{{sae}}/seed{{a}}-seed{{b}}.log",
    params:
        threshold=config["match"]["threshold"],
        definition=config["match"]["definition"],
        device=config["match"]["device"],
    threads: 1
    resources:
        mem_mb=lambda w: estimates.match_mem_mb(config, w.sae),
        runtime=lambda w: estimates.match_minutes(config, w.model, w.sae),
        disk_mb=lambda w: estimates.match_disk_mb(config, w.sae),
        gpu=1 if config["match"]["device"].startswith("cuda") else 0,
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
    params:
        seeds=lambda w: seeds_of(w.sae)[: CHANCE_SEEDS],
        threshold=config["match"]["threshold"],
        device=config["match"]["device"],
    threads: 1
    resources:
        mem_mb=lambda w: estimates.match_mem_mb(config, w.sae),
        runtime=lambda w: 3 * estimates.match_minutes(config, w.model, w.sae),
        gpu=1 if config["match"]["device"].startswith("cuda") else 0,
    script:
        "../scripts/chance.py"
