# Training: one job per group of `train.seeds_per_job` seeds (default 1). A group trains its seeds
# stacked, reading each batch once; every seed still gets its own checkpoint folder. Rules are named
# train_seeds_<seeds> (e.g. train_seeds_0_1_2) since a job's outputs are fixed by the seeds it trains.
import re

TRAIN = config.get("train", {})
TRAIN_GPUS = scheduler.gpus(config, TRAIN.get("device", "cpu"))
# a job computing its activations on the fly (activations.mode) runs the model on activations.device too
ON_THE_FLY_GPUS = max([scheduler.gpus(config, site_activations(s).get("device", "cpu")) for s in SITES if on_the_fly(s)], default=0)


def train_gpus(wildcards):
    return max(TRAIN_GPUS, scheduler.gpus(config, site_activations(wildcards).get("device", "cpu"))) if on_the_fly(wildcards) else TRAIN_GPUS


def train_mem_mb(wildcards, seeds):
    """Memory of the SAEs' training, plus the model's when the job computes its activations itself."""
    mem = estimates.train_mem_mb(config, wildcards.model, wildcards.sae, len(seeds))
    return mem + (estimates.activations_mem_mb(estimates.d_model(config, wildcards.model)) if on_the_fly(wildcards) else 0)


def train_minutes(wildcards, seeds):
    """Time of the SAEs' training, plus a model load and its forward passes when the job computes its activations."""
    minutes = estimates.train_minutes(config, wildcards.model, wildcards.sae, len(seeds))
    if on_the_fly(wildcards):
        minutes += estimates.on_the_fly_minutes(config, wildcards.model, wildcards.hook, wildcards.sae, site_activations(wildcards))
    return minutes


def train_outputs(seeds):
    return {
        kind: [f"{SAE_DIR}/seed{s}/{name}" for s in seeds]
        for kind, name in (
            ("cfg", "cfg.json"),
            ("weights", "sae.safetensors"),
            ("metrics", "metrics.json"),
            ("firing", "firing.npy"),
            ("loss_curve", "loss_curve.parquet"),
        )
    }


def train_groups():
    """Returns {(seed group, writes snapshots): SAE variants trained in that group}; variants with their own `seeds`
    get their own groups, and variants with checkpoints along training (`snapshots`) their own rules, which
    declare the snapshots' index as an output."""
    groups = {}
    for sae in dict.fromkeys(name for _, name in SITE_SAES):
        if study.is_external(config, sae):  # existing checkpoints: rule import_checkpoint (external.smk)
            continue
        for group in study.seed_groups(seeds_of(sae), TRAIN.get("seeds_per_job", 1)):
            groups.setdefault((tuple(group), study.sae_snapshots(config, sae) > 0), []).append(sae)
    return groups


for (_group, _snapshots), _saes in train_groups().items():

    rule:
        name:
            "train_seeds_" + "_".join(map(str, _group)) + ("_snapshots" if _snapshots else "")
        wildcard_constraints:
            # a seed's files belong to exactly one group per variant, so no two rules can make the same file
            sae="|".join(re.escape(s) for s in _saes),
        input:
            activations_input,
        output:
            **train_outputs(_group),
            **({"snapshots": [f"{SAE_DIR}/seed{s}/snapshots/steps.json" for s in _group]} if _snapshots else {}),
        log:
            f"logs/train/{SITE}/{{sae}}/seeds_{'_'.join(map(str, _group))}.log",
        benchmark:
            f"logs/benchmarks/train/{SITE}/{{sae}}/seeds_{'_'.join(map(str, _group))}.tsv",
        params:
            seeds=_group,
            # the variant's recipe without its seed list: adding a seed must not retrain the others
            sae=lambda w: study.canonical({k: v for k, v in config["saes"][w.sae].items() if k != "seeds"}),
            train=study.canonical(TRAIN),
            data_seed=config["data_seed"],
            on_the_fly=activations_source,
        threads: TRAIN.get("threads", 2)
        # Longest jobs first (more seeds stacked, more work): the 9-seed job starts with the first free core, so the
        # stages waiting on it (autointerp, trajectory) run beside the short ablation jobs instead of after them.
        priority: len(_group)
        resources:
            mem_mb=lambda w, attempt, seeds=_group: scheduler.scaled(train_mem_mb(w, seeds), attempt),
            runtime=lambda w, attempt, seeds=_group: scheduler.scaled(train_minutes(w, seeds), attempt),
            # the final checkpoint and, with `snapshots: n`, n - 1 more along training
            disk_mb=lambda w, seeds=_group: len(seeds) * max(1, study.sae_snapshots(config, w.sae)) * estimates.checkpoint_disk_mb(config, w.model, w.sae),
            cpus_per_task=TRAIN.get("threads", 2),
            gpu=train_gpus,
            **(scheduler.gpu_model_resources(config) if TRAIN_GPUS or ON_THE_FLY_GPUS else {}),
        conda:
            CONDA_ENV
        script:
            "../scripts/train.py"
