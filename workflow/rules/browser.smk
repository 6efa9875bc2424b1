# The latent browser of every SAE set (saeseeds.browser.build): a static folder that opens from disk, linked from the report.
from saeseeds.browser.settings import ContextConfig, template_files

BROWSER = config.get("browser", {})
BROWSER_CONTEXTS = {k: BROWSER[k] for k in ("examples", "window", "tokens") if k in BROWSER}
BROWSER_TOKENS = ContextConfig(**BROWSER_CONTEXTS).tokens


def browser_targets():
    return [f"{d}/browser/index.html" for d in sae_dirs()]


def browser_autointerp(w, kind):
    """The set's autointerp explanations (`scores`) or example windows (`examples`) per seed, when autointerp ran for it."""
    label = f"{w.model}/{w.dataset}/{w.hook}/{w.sae}"
    if label not in autointerp_labels():
        return []
    d = f"{RESULTS}/{label}/autointerp"
    return [f"{d}/examples/seed{s}.parquet" if kind == "examples" else f"{d}/seed{s}.parquet" for s in AI_SEEDS]


def browser_substitution(w):
    """The substitution test's table of the set's first pair (seed a's latents), when the functional stage measures the set."""
    path = f"{w.model}/{w.dataset}/{w.hook}"
    return [functional_pair_file(site, sae) for site, sae in FUNCTIONAL if site.path == path and sae == w.sae]


def browser_no_contexts(w):
    """Why the set's browser shows no contexts (logged by its job), or None when it shows them."""
    if study.is_external(config, w.sae):
        if not has_site(w):
            return "an external set listed under no site: there are no activations to take contexts from"
        return "an external set holds directions only (no biases or activation function to encode the site's rows with)"
    if on_the_fly(w):
        return "the site's activations are computed on the fly (activations.mode), not cached"
    return None


rule browser:
    """Every latent of every seed with its partners in the other seeds, contexts, histogram and explanation, offline."""
    input:
        matches=lambda w: pair_matches(f"{RESULTS}/{w.model}/{w.dataset}/{w.hook}/{w.sae}", w.sae),
        latents=f"{SAE_DIR}/orphans/latents.parquet",
        subsets=f"{SAE_DIR}/orphans/subsets.parquet",
        checkpoints=lambda w: [f for s in seeds_of(w.sae) for f in checkpoint_files(w, s)],
        # external sets hold directions only (no biases to encode with): partners and statistics, no contexts
        store=lambda w: [] if study.is_external(config, w.sae) else activations_input(w),
        scores=lambda w: browser_autointerp(w, "scores"),
        examples=lambda w: browser_autointerp(w, "examples"),
        substitution=browser_substitution,
        template=[str(p) for p in template_files()],
    output:
        index=report(f"{SAE_DIR}/browser/index.html", caption="../report/browser.rst", category="Latent browsers",
                     subcategory="{model}/{dataset}/{hook}"),
        script=f"{SAE_DIR}/browser/browser.js",
        style=f"{SAE_DIR}/browser/browser.css",
        data=directory(f"{SAE_DIR}/browser/data"),
    log:
        f"logs/browser/{SITE}/{{sae}}.log",
    benchmark:
        f"logs/benchmarks/browser/{SITE}/{{sae}}.tsv",
    params:
        seeds=lambda w: seeds_of(w.sae),
        pairs=lambda w: pairs_of(w.sae),  # in the order of input.matches
        autointerp_seeds=lambda w: list(AI_SEEDS) if browser_autointerp(w, "scores") else [],
        substitution_seed=lambda w: functional_config.pair(config, w.sae)[0] if browser_substitution(w) else None,
        model=lambda w: study.canonical(config["models"][w.model]) if has_site(w) else None,  # None: external, no site
        no_contexts=browser_no_contexts,
        contexts=BROWSER_CONTEXTS,
        device=BROWSER.get("device", "cpu"),
    threads: 1
    resources:
        # the searched rows in float32, three dense [2048, latents] batches, the sparse activations
        mem_mb=lambda w: 1500 + (BROWSER_TOKENS * (4 * estimates.d_model(config, w.model) + 16 * 64)
                                 + 3 * 2048 * config["saes"][w.sae].get("num_latents", estimates.EXTERNAL_LATENTS) * 4) // 2**20,
        runtime=lambda w: 10 + len(seeds_of(w.sae)) * BROWSER_TOKENS * estimates.d_model(config, w.model)
        * config["saes"][w.sae].get("num_latents", estimates.EXTERNAL_LATENTS) // 10**11,
        gpu=scheduler.gpus(config, BROWSER.get("device", "cpu")),
    conda:
        CONDA_ENV
    script:
        "../scripts/browser.py"
