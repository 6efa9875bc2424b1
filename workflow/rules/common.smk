# Config validation (schema, then cross-key checks) and the functions that turn the config into file lists.
import os

from snakemake.exceptions import WorkflowError

from saeseeds.plan import estimates
from saeseeds.plan import scheduler
from saeseeds.config import study, validate
from saeseeds.config.study import CHANCE_SEEDS

# Idle OpenMP threads sleep instead of spinning: with spinning, two torch threads on a shared 2-core
# machine ran 2.5-4x slower per training step (benchmarks/README.md). Job scripts inherit this.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Jobs import saeseeds from this checkout, also in a conda environment (envs/saeseeds.yaml) that lacks it.
_SRC = os.path.normpath(os.path.join(workflow.basedir, "..", "src"))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_SRC, os.environ.get("PYTHONPATH")) if p)
# Every rule runs in this environment under `--software-deployment-method conda` (path relative to rules/;
# envs/ at the root links to workflow/envs/, so a copy of workflow/ alone is complete).
CONDA_ENV = "../envs/saeseeds.yaml"

# Every check before any job, in one call (saeseeds.config.validate): schema, cross-key, synthetic sites, the
# autointerp and functional sections, Figures 1-3's sets and the trainer's config objects (saeseeds.sae.configs,
# which imports no torch, so the check costs every Snakemake start and every job ~0.1 s).
validate.validate_config(config, workflow.source_path("../schemas/config.schema.yaml"))

SITES = study.sites(config)
SITE_SAES = study.site_saes(config)
SEEDS = sorted(config["seeds"])
RESULTS = "results"
SITE = "{model}/{dataset}/{hook}"
SAE_DIR = f"{RESULTS}/{SITE}/{{sae}}"


wildcard_constraints:
    model="[A-Za-z0-9][A-Za-z0-9_.-]*",
    dataset="[A-Za-z0-9][A-Za-z0-9_.-]*",
    hook="[A-Za-z0-9_]+(\\.[A-Za-z0-9_]+)*",
    sae="[A-Za-z0-9][A-Za-z0-9_.-]*",
    seed="[0-9]+",
    a="[0-9]+",
    b="[0-9]+",


def has_site(wildcards):
    """Whether the wildcards' (site, sae) has a model and dataset behind it (else an external set listed under no
    site, analysed at study.NO_SITE)."""
    return study.has_site(study.Site(wildcards.model, wildcards.dataset, wildcards.hook))


def site_activations(wildcards):
    """The activations settings of the wildcards' site (study settings with the site's overrides), less `threads`,
    `shards` and `mode`, which say how jobs run, not what they compute."""
    return study.row_settings(study.site_activations(config, wildcards.model, wildcards.dataset, wildcards.hook))


def on_the_fly(wildcards):
    """Whether the wildcards' site computes its activations in the jobs that read them (activations.mode)."""
    return study.on_the_fly(config, wildcards.model, wildcards.dataset, wildcards.hook)


def activations_input(wildcards):
    """The site's cached store, or nothing when its activations are computed on the fly."""
    return [] if on_the_fly(wildcards) else [f"{RESULTS}/{wildcards.model}/{wildcards.dataset}/{wildcards.hook}/activations.zarr"]


def activations_source(wildcards):
    """What a job needs to compute the site's activations on the fly (model, dataset and row settings), else None."""
    if not on_the_fly(wildcards):
        return None
    return {
        "model": study.canonical(config["models"][wildcards.model]),
        "dataset": study.canonical(config["datasets"][wildcards.dataset]),
        "activations": study.canonical(site_activations(wildcards)),
    }


def local_cores(default=2):
    """All cores of a local run (--cores); `default` under a cluster executor, which has no core count."""
    try:
        return workflow.cores
    except WorkflowError:
        return default


def sae_dirs():
    """Every (site, sae) output folder, as paths under results/."""
    return [f"{RESULTS}/{site.path}/{sae}" for site, sae in SITE_SAES]


def site_sae_labels():
    """Figure labels, one per (site, sae): the folder under results/ ({model}/{dataset}/{hook}/{sae})."""
    return [f"{site.path}/{sae}" for site, sae in SITE_SAES]


def seeds_of(sae):
    """The seeds of an SAE variant (its own `seeds`, else the study's)."""
    return study.sae_seeds(config, sae)


def pairs_of(sae):
    """Every seed pair a < b of an SAE variant, in the order its matches are listed."""
    return study.seed_pairs(seeds_of(sae))


def checkpoint_files(wildcards, seed):
    """A checkpoint as a rule's input: its weights file. The job that writes it writes cfg.json beside it (a missing
    cfg.json reruns that job as any missing output does), so one file per seed stands for the folder, and the paper's
    dry run looks up ~2,500 fewer files."""
    d = f"{RESULTS}/{wildcards.model}/{wildcards.dataset}/{wildcards.hook}/{wildcards.sae}/seed{seed}"
    return [f"{d}/sae.safetensors"]


def pair_matches(prefix, sae):
    return [f"{prefix}/matches/seed{a}-seed{b}.parquet" for a, b in pairs_of(sae)]


def set_targets():
    """The summary (which reads every set's checkpoints' metrics, pair matches, orphans, chance and PW-MCC, so those
    are built for it) and each set's stability table; the figures are `figure_targets()` (figures.smk).

    Only what nothing else reads is listed: each listed file costs the dry run a producer lookup (~0.2 ms), and
    the paper's study has ~2,000 per-seed and per-pair files that the summary lists already."""
    return [f"{d}/stability.csv" for d in sae_dirs()] + [f"{RESULTS}/summary.{ext}" for ext in ("csv", "parquet", "md")]

