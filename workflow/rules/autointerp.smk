# Autointerp (paper Sec. 5, Fig 6, Table 1): explain latents of two seeds from their top-activating contexts, score
# each explanation by detection, and compare shared with orphan latents. Only when the config has `autointerp`.
from saeseeds.config import autointerp as autointerp_config
AUTOINTERP = autointerp_config.site_saes_explained(config)
AI = autointerp_config.section(config) or {}
AI_SEEDS = autointerp_config.seeds(config) if AI else ()
AI_BACKEND = AI.get("backend", {"kind": "transformers"})
AI_IN_PROCESS = AI_BACKEND.get("kind", "transformers") == "transformers"


def autointerp_dirs():
    return [f"{RESULTS}/{site.path}/{sae}" for site, sae in AUTOINTERP]


def autointerp_labels():
    return [f"{site.path}/{sae}" for site, sae in AUTOINTERP]


def autointerp_targets():
    if not AUTOINTERP:
        return []
    targets = [f"{d}/autointerp/seed{s}.parquet" for d in autointerp_dirs() for s in AI_SEEDS]
    targets += [f"{RESULTS}/figures/fig6_autointerp.{ext}" for ext in ("html", "png")]
    return targets + [f"{RESULTS}/figures/table1_explanations.{ext}" for ext in ("csv", "html")]


rule autointerp_latents:
    """Pick the latents to explain: a cosine-stratified sample of the first seed's firing latents and their counterparts."""
    input:
        matches=f"{SAE_DIR}/matches/seed{AI_SEEDS[0] if AI else 0}-seed{AI_SEEDS[1] if AI else 1}.parquet",
        firing=f"{SAE_DIR}/seed{AI_SEEDS[0] if AI else 0}/firing.npy",
    output:
        f"{SAE_DIR}/autointerp/latents.parquet",
    log:
        f"logs/autointerp_latents/{SITE}/{{sae}}.log",
    benchmark:
        f"logs/benchmarks/autointerp_latents/{SITE}/{{sae}}.tsv",
    params:
        seeds=list(AI_SEEDS),
        n_latents=AI.get("n_latents"),
        seed=AI.get("seed", 0),
    threads: 1
    priority: 10
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/autointerp_latents.py"


rule latent_examples:
    """Top-activating training windows and quantile-sampled active / random non-active held-out windows per latent."""
    input:
        store=activations_input,
        checkpoint=lambda w: checkpoint_files(w, w.seed),
        latents=f"{SAE_DIR}/autointerp/latents.parquet",
    output:
        f"{SAE_DIR}/autointerp/examples/seed{{seed}}.parquet",
    log:
        f"logs/latent_examples/{SITE}/{{sae}}/seed{{seed}}.log",
    benchmark:
        f"logs/benchmarks/latent_examples/{SITE}/{{sae}}/seed{{seed}}.tsv",
    params:
        model=lambda w: study.canonical(config["models"][w.model]),
        examples=study.canonical(autointerp_config.example_settings(config)) if AI else {},
        device=AI.get("device", "cpu"),
        on_the_fly=activations_source,
    threads: 1
    priority: 10
    resources:
        # on the fly, the job also holds the model and runs it over the rows it searches (about a caching job's work)
        mem_mb=lambda w: 2000 + 3 * 8192 * config["saes"][w.sae].get("num_latents", estimates.EXTERNAL_LATENTS) * 4 // 2**20
        + (estimates.activations_mem_mb(estimates.d_model(config, w.model)) if on_the_fly(w) else 0),
        runtime=lambda w: estimates.activations_minutes(site_activations(w), estimates.d_model(config, w.model), w.hook) // (1 if on_the_fly(w) else 4) + 5,
        gpu=lambda w: max(scheduler.gpus(config, AI.get("device", "cpu")), scheduler.gpus(config, site_activations(w).get("device", "cpu")) if on_the_fly(w) else 0),
    conda:
        CONDA_ENV
    script:
        "../scripts/latent_examples.py"


rule autointerp:
    """Explain every chosen latent of both seeds and score the explanations by detection (cached model calls)."""
    input:
        examples=[f"{SAE_DIR}/autointerp/examples/seed{s}.parquet" for s in AI_SEEDS],
        latents=f"{SAE_DIR}/autointerp/latents.parquet",
    output:
        [f"{SAE_DIR}/autointerp/seed{s}.parquet" for s in AI_SEEDS],
    log:
        f"logs/autointerp/{SITE}/{{sae}}.log",
    benchmark:
        f"logs/benchmarks/autointerp/{SITE}/{{sae}}.tsv",
    params:
        seeds=list(AI_SEEDS),
        backend=study.canonical(AI_BACKEND),
        scoring=study.canonical(autointerp_config.scoring_settings(config)) if AI else {},
        cache=AI.get("cache", f"{RESULTS}/autointerp_cache.sqlite"),
    threads: (AI.get("threads") or local_cores()) if AI_IN_PROCESS else 1
    # The explanations need only the main set's first two seeds: start them as soon as those exist, beside the
    # ablations' training, instead of after it (the default study's tail; README, "Time").
    priority: 10
    resources:
        mem_mb=8000 if AI_IN_PROCESS else 2000,
        runtime=lambda w: autointerp_config.autointerp_minutes(config, w.sae),
        gpu=scheduler.gpus(config, AI_BACKEND.get("device", "cpu")) if AI_IN_PROCESS else 0,
    conda:
        CONDA_ENV
    script:
        "../scripts/autointerp.py"


rule fig6_autointerp:
    """Fig 6: detection score by number of seeds sharing the latent, and against the matched cosine of the two seeds."""
    input:
        scores=[f"{d}/autointerp/seed{s}.parquet" for d in autointerp_dirs() for s in AI_SEEDS],
        orphans=[f"{d}/orphans/latents.parquet" for d in autointerp_dirs() for s in AI_SEEDS],
        style=STYLE,
    output:
        **figure_outputs("fig6_autointerp"),
    log:
        "logs/figures/fig6_autointerp.log",
    benchmark:
        "logs/benchmarks/figures/fig6_autointerp.tsv",
    params:
        labels=[label for label in autointerp_labels() for s in AI_SEEDS],
        threshold=config["match"]["threshold"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/fig6_autointerp.py"


rule table1_explanations:
    """Table 1: latent pairs of the two seeds at several alignment levels, with both explanations and scores."""
    input:
        scores=[f"{d}/autointerp/seed{s}.parquet" for d in autointerp_dirs() for s in AI_SEEDS],
    output:
        csv=f"{RESULTS}/figures/table1_explanations.csv",
        html=report(f"{RESULTS}/figures/table1_explanations.html", caption="../report/table1_explanations.rst", category="Figures"),
    log:
        "logs/figures/table1_explanations.log",
    benchmark:
        "logs/benchmarks/figures/table1_explanations.tsv",
    params:
        labels=[label for label in autointerp_labels() for s in AI_SEEDS],
        per_level=AI.get("table_pairs_per_level", 2),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/table1_explanations.py"
