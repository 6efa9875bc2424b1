from types import SimpleNamespace

# Matching runs on config `match.device`; on cuda its jobs ask for a GPU (config `cluster.gpu_requests`).
MATCH_GPUS = scheduler.gpus(config, config["match"]["device"])
# One job per seed pair (`match.pairs_per_job: 1`, the default: on a cluster each pair is a GPU job of its own), or a
# set's pairs in jobs of up to that many, which load each seed once: a 1152-latent matching takes ~0.5 s and its
# job ~3 s of Python and torch start-up, so on a laptop one job per set saves most of the stage.
PAIRS_PER_JOB = config["match"].get("pairs_per_job", 1)
# What every matching job gets, whichever form its rule takes below.
MATCH_SETTINGS = {key: config["match"][key] for key in ("threshold", "definition", "device", "max_rounds")}
MATCH_JOB_RESOURCES = dict(cpus_per_task=1, gpu=MATCH_GPUS, **(scheduler.gpu_model_resources(config) if MATCH_GPUS else {}))


def pair_chunks():
    """Returns [(site, sae, chunk index, [(a, b), ...])]: each set's pairs cut into jobs of `match.pairs_per_job`."""
    return [
        (site, sae, k // PAIRS_PER_JOB, pairs[k : k + PAIRS_PER_JOB])
        for site, sae in SITE_SAES
        for pairs in [pairs_of(sae)]
        for k in range(0, len(pairs), PAIRS_PER_JOB)
    ]


if PAIRS_PER_JOB > 1:
    for _index, (_site, _sae, _chunk, _pairs) in enumerate(pair_chunks()):
        _w = SimpleNamespace(model=_site.model, dataset=_site.dataset, hook=_site.hook, sae=_sae)
        _seeds = sorted({s for pair in _pairs for s in pair})

        rule:
            name:
                f"match_pairs_{_index}"
            input:
                [f for s in _seeds for f in checkpoint_files(_w, s)],
            output:
                [f"{RESULTS}/{_site.path}/{_sae}/matches/seed{a}-seed{b}.parquet" for a, b in _pairs],
            log:
                f"logs/match/{_site.path}/{_sae}/pairs{_chunk}.log",
            benchmark:
                f"logs/benchmarks/match/{_site.path}/{_sae}/pairs{_chunk}.tsv",
            params:
                pairs=_pairs,
                **MATCH_SETTINGS,
            threads: 1
            resources:
                mem_mb=lambda w, attempt, site=_site, sae=_sae: scheduler.scaled(estimates.match_mem_mb(config, site.model, sae), attempt),
                runtime=lambda w, attempt, site=_site, sae=_sae, n=len(_pairs): scheduler.scaled(
                    n * estimates.match_minutes(config, site.model, sae), attempt),
                disk_mb=estimates.match_disk_mb(config, _sae) * len(_pairs),
                **MATCH_JOB_RESOURCES,
            conda:
                CONDA_ENV
            script:
                "../scripts/match.py"

else:

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
            pairs=lambda w: [(int(w.a), int(w.b))],
            **MATCH_SETTINGS,
        threads: 1
        resources:
            mem_mb=lambda w, attempt: scheduler.scaled(estimates.match_mem_mb(config, w.model, w.sae), attempt),
            runtime=lambda w, attempt: scheduler.scaled(estimates.match_minutes(config, w.model, w.sae), attempt),
            disk_mb=lambda w: estimates.match_disk_mb(config, w.sae),
            **MATCH_JOB_RESOURCES,
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
        mem_mb=lambda w, attempt: scheduler.scaled(estimates.match_mem_mb(config, w.model, w.sae), attempt),
        runtime=lambda w, attempt: scheduler.scaled(3 * estimates.match_minutes(config, w.model, w.sae), attempt),
        cpus_per_task=1,
        gpu=MATCH_GPUS,
        **(scheduler.gpu_model_resources(config) if MATCH_GPUS else {}),
    conda:
        CONDA_ENV
    script:
        "../scripts/chance.py"
