# Functional correspondence (beyond the paper): loss recovered with each seed's SAE spliced into the model, and the
# substitution test of every latent against its partner in another seed. Only when the config has `functional`.
from types import SimpleNamespace

from saeseeds.config import functional as functional_config
FUNCTIONAL = functional_config.site_saes_measured(config)
FUNCTIONAL_MODEL = functional_config.model_site_saes(config)
FN = functional_config.section(config) or {}
# The model-running jobs keep about one core busy whatever their threads (a 2-thread loss job: 90 CPU-s in 92 s), so
# `functional.threads: 1` lets them run beside the 1-thread training jobs instead of alone.
FN_THREADS = FN.get("threads") or local_cores()


def functional_pair_file(site, sae, kind="substitution"):
    a, b = functional_config.pair(config, sae)
    return f"{RESULTS}/{site.path}/{sae}/functional/{kind}/seed{a}-seed{b}.parquet"


def functional_targets():
    if not FUNCTIONAL:
        return []
    targets = [f"{RESULTS}/{site.path}/{sae}/functional/loss.parquet" for site, sae in FUNCTIONAL]
    targets += [functional_pair_file(site, sae) for site, sae in FUNCTIONAL]
    targets += [functional_pair_file(site, sae, "model_substitution") for site, sae in FUNCTIONAL_MODEL]
    return targets + expand(f"{RESULTS}/figures/{{name}}.{{ext}}", name=["figF1_substitution", "figF2_loss_recovered"], ext=["html", "png"])


def functional_summary_inputs(wildcards=None):
    """The functional outputs the summary reads (none without a `functional` section)."""
    return [f for site, sae in FUNCTIONAL for f in functional_entry(site, sae).values()]


def functional_entry(site, sae):
    """The functional files of a (site, sae) the summary reads: {} when it is not measured."""
    if (site, sae) not in FUNCTIONAL:
        return {}
    files = {"loss": f"{RESULTS}/{site.path}/{sae}/functional/loss.parquet", "substitution": functional_pair_file(site, sae)}
    if (site, sae) in FUNCTIONAL_MODEL:
        files["model_substitution"] = functional_pair_file(site, sae, "model_substitution")
    return files


# One loss-recovered job per site: the model loads once (a second for the embedded SmolLM2's copy, minutes for a large
# hub model) and its clean and zero-ablated runs serve every variant measured there. Rules are written out per site,
# since one job's outputs are the loss tables of several variants.
for _index, (_site, _saes) in enumerate(functional_config.by_site(config).items()):
    _w = SimpleNamespace(model=_site.model, dataset=_site.dataset, hook=_site.hook)

    rule:
        name:
            f"functional_loss_{_index}"
        input:
            store=activations_input(_w),
            checkpoints=[f for sae in _saes for s in seeds_of(sae) for f in checkpoint_files(SimpleNamespace(**vars(_w), sae=sae), s)],
        output:
            [f"{RESULTS}/{_site.path}/{sae}/functional/loss.parquet" for sae in _saes],
        log:
            f"logs/functional_loss/{_site.path}.log",
        benchmark:
            f"logs/benchmarks/functional_loss/{_site.path}.tsv",
        params:
            model=study.canonical(config["models"][_site.model]),
            hook=_site.hook,
            saes=[{"sae": sae, "dir": f"{RESULTS}/{_site.path}/{sae}", "seeds": seeds_of(sae)} for sae in _saes],
            contexts=FN.get("contexts"),
            batch_size=FN.get("batch_size"),
            keep_first_position=FN.get("keep_first_position", False),
            device=FN.get("device", "cpu"),
            on_the_fly=activations_source(_w),
        threads: FN_THREADS
        priority: 10  # the model loads once for every variant: start as soon as the last one is trained
        resources:
            # the model and, per batch, float64 log-probabilities of the clean and one spliced run (vocabulary-wide)
            mem_mb=estimates.activations_mem_mb(estimates.d_model(config, _site.model)) + 600 * FN.get("batch_size", 2),
            runtime=10 + FN.get("contexts", 4) * (2 + sum(len(seeds_of(s)) for s in _saes)) // 20,
            gpu=scheduler.gpus(config, FN.get("device", "cpu")),
        conda:
            CONDA_ENV
        script:
            "../scripts/functional_loss.py"


rule functional_substitution:
    """Substitution test in activation space: every latent of seed a against its decoder partner in seed b and two controls."""
    input:
        store=activations_input,
        a=lambda w: checkpoint_files(w, w.a),
        b=lambda w: checkpoint_files(w, w.b),
        matches=f"{SAE_DIR}/matches/seed{{a}}-seed{{b}}.parquet",
    output:
        f"{SAE_DIR}/functional/substitution/seed{{a}}-seed{{b}}.parquet",
    log:
        f"logs/functional_substitution/{SITE}/{{sae}}/seed{{a}}-seed{{b}}.log",
    benchmark:
        f"logs/benchmarks/functional_substitution/{SITE}/{{sae}}/seed{{a}}-seed{{b}}.tsv",
    params:
        fit_rows=FN.get("fit_rows"),
        seed=FN.get("seed", 0),
        device=FN.get("device", "cpu"),
        on_the_fly=activations_source,
    threads: 1
    resources:
        mem_mb=lambda w: 1500 + 12 * 4096 * config["saes"][w.sae].get("num_latents", estimates.EXTERNAL_LATENTS) * 8 // 2**20
        + (estimates.activations_mem_mb(estimates.d_model(config, w.model)) if on_the_fly(w) else 0),
        runtime=15,
        gpu=scheduler.gpus(config, FN.get("device", "cpu")),
    conda:
        CONDA_ENV
    script:
        "../scripts/functional_substitution.py"


rule functional_model_substitution:
    """Substitution through the model: a cosine-stratified sample of latents swapped for their partners and controls at the hook; KL to the clean model."""
    input:
        store=activations_input,
        a=lambda w: checkpoint_files(w, w.a),
        b=lambda w: checkpoint_files(w, w.b),
        substitution=f"{SAE_DIR}/functional/substitution/seed{{a}}-seed{{b}}.parquet",
    output:
        f"{SAE_DIR}/functional/model_substitution/seed{{a}}-seed{{b}}.parquet",
    log:
        f"logs/functional_model_substitution/{SITE}/{{sae}}/seed{{a}}-seed{{b}}.log",
    benchmark:
        f"logs/benchmarks/functional_model_substitution/{SITE}/{{sae}}/seed{{a}}-seed{{b}}.tsv",
    params:
        model=lambda w: study.canonical(config["models"][w.model]),
        n_latents=FN.get("model_latents", 4),
        contexts=FN.get("model_contexts", 1),
        seed=FN.get("seed", 0),
        device=FN.get("device", "cpu"),
        on_the_fly=activations_source,
    threads: FN_THREADS
    priority: 10  # needs only the main set's first pair: runs before the ablations finish
    resources:
        mem_mb=lambda w: estimates.activations_mem_mb(estimates.d_model(config, w.model)) + 600 * FN.get("model_contexts", 1),
        runtime=lambda w: 10 + (FN.get("model_latents") or config["saes"][w.sae].get("num_latents", estimates.EXTERNAL_LATENTS)) * FN.get("model_contexts", 1) // 10,
        gpu=scheduler.gpus(config, FN.get("device", "cpu")),
    conda:
        CONDA_ENV
    script:
        "../scripts/functional_model_substitution.py"


rule figF1_substitution:
    """Substitution score against matched cosine, shared vs orphan latents, with the random and best non-partner controls."""
    input:
        tables=[functional_pair_file(site, sae) for site, sae in FUNCTIONAL],
        style=STYLE,
    output:
        **figure_outputs("figF1_substitution"),
    log:
        "logs/figures/figF1_substitution.log",
    benchmark:
        "logs/benchmarks/figures/figF1_substitution.tsv",
    params:
        labels=[f"{site.path}/{sae}" for site, sae in FUNCTIONAL],
        threshold=config["match"]["threshold"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/figF1_substitution.py"


rule figF2_loss_recovered:
    """Loss recovered per measured SAE variant next to its shared fraction."""
    input:
        summary=SUMMARY_PARQUET,
        style=STYLE,
    output:
        **figure_outputs("figF2_loss_recovered"),
    log:
        "logs/figures/figF2_loss_recovered.log",
    benchmark:
        "logs/benchmarks/figures/figF2_loss_recovered.tsv",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/figF2_loss_recovered.py"
