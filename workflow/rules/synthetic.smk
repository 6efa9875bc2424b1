# Synthetic sites (models with `source: synthetic`): activations with a known dictionary, so every seed's
# latents can be checked against the true features. The activations rule below makes their stores (the
# caching rules activations_* skip these models); training, matching and orphan rules run on them unchanged.
import re

from saeseeds.synthetic import generator as synthetic
SYNTHETIC_MODELS = [name for name, entry in config["models"].items() if entry["source"] == synthetic.SOURCE]
SYNTHETIC_SAES = [(site, sae) for site, sae in SITE_SAES if site.model in SYNTHETIC_MODELS]
SYNTHETIC_MODEL = "|".join(re.escape(m) for m in SYNTHETIC_MODELS) or "(?!)"  # (?!) matches nothing


def synthetic_dirs():
    return [f"{RESULTS}/{site.path}/{sae}" for site, sae in SYNTHETIC_SAES]


def synthetic_targets():
    if not SYNTHETIC_SAES:
        return []
    targets = [f"{d}/recovery/{name}.parquet" for d in synthetic_dirs() for name in ("latents", "features", "union")]
    targets += [f"{RESULTS}/figures/figX1_recovery.{ext}" for ext in ("html", "png")]
    return targets + [f"{RESULTS}/recovery.csv"]


rule synthetic_activations:
    """Generate a synthetic site's activations (known dictionary, Zipf firing, noise) and save the ground truth."""
    output:
        store=directory(f"{RESULTS}/{SITE}/activations.zarr"),
        truth=f"{RESULTS}/{SITE}/ground_truth.npz",
    log:
        f"logs/activations/{SITE}.log",
    benchmark:
        f"logs/benchmarks/activations/{SITE}.tsv",
    wildcard_constraints:
        model=SYNTHETIC_MODEL,
    params:
        synthetic=lambda w: study.canonical(config["models"][w.model]["synthetic"]),
        activations=lambda w: study.canonical(site_activations(w)),
    threads: 1
    resources:
        mem_mb=lambda w: synthetic.mem_mb(config["models"][w.model]["synthetic"]),
        runtime=lambda w: synthetic.minutes(config["models"][w.model]["synthetic"], site_activations(w)["max_tokens"]),
        disk_mb=lambda w: synthetic.disk_mb(config["models"][w.model]["synthetic"], site_activations(w)),
    conda:
        CONDA_ENV
    script:
        "../scripts/synthetic_activations.py"


rule truth_match:
    """Match one seed's decoder rows to the true dictionary (exact assignment): which true feature each latent recovers."""
    input:
        checkpoint=lambda w: checkpoint_files(w, w.seed),
        truth=f"{RESULTS}/{SITE}/ground_truth.npz",
    output:
        f"{SAE_DIR}/truth/seed{{seed}}.parquet",
    log:
        f"logs/truth_match/{SITE}/{{sae}}/seed{{seed}}.log",
    benchmark:
        f"logs/benchmarks/truth_match/{SITE}/{{sae}}/seed{{seed}}.tsv",
    wildcard_constraints:
        model=SYNTHETIC_MODEL,
    params:
        threshold=config["match"]["threshold"],
        device=config["match"]["device"],
    threads: 1
    resources:
        mem_mb=lambda w: estimates.match_mem_mb(config, w.model, w.sae),
        runtime=lambda w: estimates.match_minutes(config, w.model, w.sae),
        disk_mb=lambda w: estimates.match_disk_mb(config, w.sae),
        gpu=MATCH_GPUS,
        **(scheduler.gpu_model_resources(config) if MATCH_GPUS else {}),
    conda:
        CONDA_ENV
    script:
        "../scripts/truth_match.py"


rule recovery:
    """Per latent (true feature or spurious, orphan or shared), per true feature (seeds recovering it), per seed subset (union)."""
    input:
        truth_matches=lambda w: [f"{RESULTS}/{w.model}/{w.dataset}/{w.hook}/{w.sae}/truth/seed{s}.parquet" for s in seeds_of(w.sae)],
        orphans=f"{SAE_DIR}/orphans/latents.parquet",
        truth=f"{RESULTS}/{SITE}/ground_truth.npz",
    output:
        latents=f"{SAE_DIR}/recovery/latents.parquet",
        features=f"{SAE_DIR}/recovery/features.parquet",
        union=f"{SAE_DIR}/recovery/union.parquet",
    log:
        f"logs/recovery/{SITE}/{{sae}}.log",
    benchmark:
        f"logs/benchmarks/recovery/{SITE}/{{sae}}.tsv",
    wildcard_constraints:
        model=SYNTHETIC_MODEL,
    params:
        seeds=lambda w: seeds_of(w.sae),
    threads: 1
    resources:
        mem_mb=lambda w: estimates.orphans_mem_mb(config, w.sae),
        runtime=5,
        disk_mb=lambda w: estimates.orphans_disk_mb(config, w.sae),
    conda:
        CONDA_ENV
    script:
        "../scripts/recovery.py"


rule figX1_recovery:
    """Fig X1 (synthetic sites): recovery by the union of seeds, recovery vs true frequency, orphans true vs spurious."""
    input:
        latents=[f"{d}/recovery/latents.parquet" for d in synthetic_dirs()],
        features=[f"{d}/recovery/features.parquet" for d in synthetic_dirs()],
        union=[f"{d}/recovery/union.parquet" for d in synthetic_dirs()],
        style=STYLE,
    output:
        html=report(f"{RESULTS}/figures/figX1_recovery.html", caption="../report/figX1_recovery.rst", category="Figures"),
        png=report(f"{RESULTS}/figures/figX1_recovery.png", caption="../report/figX1_recovery.rst", category="Figures"),
    log:
        "logs/figures/figX1_recovery.log",
    benchmark:
        "logs/benchmarks/figures/figX1_recovery.tsv",
    params:
        labels=[f"{site.path}/{sae}" for site, sae in SYNTHETIC_SAES],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/figX1_recovery.py"


rule recovery_summary:
    """One row per synthetic (site, sae): true features recovered per seed and by the union, what orphans are."""
    input:
        latents=[f"{d}/recovery/latents.parquet" for d in synthetic_dirs()],
        features=[f"{d}/recovery/features.parquet" for d in synthetic_dirs()],
        union=[f"{d}/recovery/union.parquet" for d in synthetic_dirs()],
    output:
        report(f"{RESULTS}/recovery.csv", caption="../report/recovery.rst", category="Summary"),
    log:
        "logs/recovery_summary.log",
    benchmark:
        "logs/benchmarks/recovery_summary.tsv",
    params:
        labels=[f"{site.path}/{sae}" for site, sae in SYNTHETIC_SAES],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/recovery_summary.py"
