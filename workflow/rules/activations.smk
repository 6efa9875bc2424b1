# Caching: one job per (model, dataset, activations settings) serves every hook of that model there with one
# forward pass per batch, stopped after the deepest hook (the default study's six SmolLM2 hooks cost one
# pass to layer 10 instead of six). Rules are named activations_<i>, i counting these groups in config order.
# Adding a hook to a group recaches the group's other hooks too (one job makes all its stores); removing one
# recaches nothing: the job's hook list is a param derived from its outputs (`store_hooks`), which Snakemake
# leaves out of its params rerun trigger, so each store is judged by what it holds (model, dataset, settings,
# its own path). With activations.shards = N > 1, N jobs (activations_<i>_shard) each cache a range of
# contexts and activations_<i> joins them.
import hashlib
import json
import os

from saeseeds.synthetic import generator as _synthetic
def activation_groups():
    """Returns [(model, dataset, settings, threads, shards, [hooks])]: the hooks one caching job serves, in config
    order, for every site with activations.mode cache. `threads` and `shards` say how jobs run, not what they
    compute, so they are not in the settings."""
    groups = {}
    for site in SITES:
        if config["models"][site.model]["source"] == _synthetic.SOURCE:
            continue  # generated, not cached (rules/synthetic.smk)
        if study.on_the_fly(config, site.model, site.dataset, site.hook):
            continue  # computed inside the jobs that read it
        acts = study.site_activations(config, site.model, site.dataset, site.hook)
        settings = study.row_settings(acts)
        key = (site.model, site.dataset, json.dumps(study.canonical(settings)), acts.get("shards", 1))
        groups.setdefault(key, (settings, acts.get("threads"), []))[2].append(site.hook)
    return [
        (model, dataset, settings, threads, shards, list(dict.fromkeys(hooks)))
        for (model, dataset, _, shards), (settings, threads, hooks) in groups.items()
    ]


def store_hooks(wildcards, output):
    """Returns the hooks of a caching job's stores, in output order: each store is {RESULTS}/{SITE}/activations.zarr.
    As a params function of `output` it is a param derived from the outputs, which Snakemake's params trigger
    skips: dropping a hook from a group changes the job's hook list but not what the other stores hold."""
    return [os.path.basename(os.path.dirname(os.path.normpath(path))) for path in output]


def shard_hooks(hooks):
    """Returns a params function giving a shard job the hooks it caches, derived from its output like
    `store_hooks`: when a hook is dropped, the (deleted, temp) shards of the stores kept are not made out of date,
    which would rerun the join and so every shard. A shard left behind by an interrupted run with other hooks
    is caught by join_shards, which names it."""
    return lambda wildcards, output: list(hooks)


def shard_folder(model, dataset, settings, shards):
    """Returns the folder of a group's temporary shards, named by what they hold apart from the hook list
    (model, dataset, settings, shard count), so a narrower hook list keeps the join job's inputs unchanged."""
    key = json.dumps([study.canonical(settings), shards], sort_keys=True)
    return f"{RESULTS}/{model}/{dataset}/.shards/{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def caching_resources(model, settings, hooks, threads, fraction=1.0):
    """Resources of a job that caches `fraction` of the tokens of `hooks` (a shard, or all of them)."""
    device = settings.get("device", "cpu")
    d = estimates.d_model(config, model)
    part = {**settings, "max_tokens": max(1, int(settings["max_tokens"] * fraction))}
    return dict(
        mem_mb=lambda w, attempt: scheduler.scaled(estimates.activations_mem_mb(d), attempt),
        runtime=lambda w, attempt: scheduler.scaled(estimates.activations_minutes(part, d, hooks, flops=estimates.forward_flops(config, device)), attempt),
        disk_mb=len(hooks) * estimates.activations_disk_mb(part, d),
        cpus_per_task=threads,
        gpu=scheduler.gpus(config, device),
        **(scheduler.gpu_model_resources(config) if scheduler.gpus(config, device) else {}),
    )


for _i, (_model, _dataset, _settings, _threads, _shards, _hooks) in enumerate(activation_groups()):
    _stores = [directory(f"{RESULTS}/{_model}/{_dataset}/{hook}/activations.zarr") for hook in _hooks]
    _log = f"logs/activations/{_model}/{_dataset}/{'+'.join(_hooks)}"
    _bench = f"logs/benchmarks/activations/{_model}/{_dataset}/{'+'.join(_hooks)}"  # wall time, memory (Snakemake `benchmark:`)
    _threads = _threads or local_cores()

    if _shards == 1:

        rule:
            name:
                f"activations_{_i}"
            output:
                _stores,
            log:
                f"{_log}.log",
            benchmark:
                f"{_bench}.tsv",
            params:
                model=study.canonical(config["models"][_model]),
                dataset=study.canonical(config["datasets"][_dataset]),
                activations=study.canonical(_settings),
                hooks=store_hooks,  # in output order; not a rerun trigger (see above)
            threads: _threads
            resources:
                **caching_resources(_model, _settings, _hooks, _threads),
            conda:
                CONDA_ENV
            script:
                "../scripts/activations.py"

    else:
        # Shards: parallel jobs each cache a range of contexts for every hook; one job joins them (hard links).
        _shard_dir = shard_folder(_model, _dataset, _settings, _shards)

        rule:
            name:
                f"activations_{_i}_shard"
            output:
                temp(directory(f"{_shard_dir}/shard{{shard}}")),
            log:
                f"{_log}.shard{{shard}}.log",
            benchmark:
                f"{_bench}.shard{{shard}}.tsv",
            wildcard_constraints:
                shard="[0-9]+",
            params:
                model=study.canonical(config["models"][_model]),
                dataset=study.canonical(config["datasets"][_dataset]),
                activations=study.canonical(_settings),
                hooks=shard_hooks(_hooks),  # not a rerun trigger (see shard_hooks)
                shards=_shards,
            threads: _threads
            resources:
                **caching_resources(_model, _settings, _hooks, _threads, fraction=1 / _shards),
            conda:
                CONDA_ENV
            script:
                "../scripts/activations_shard.py"

        rule:
            name:
                f"activations_{_i}"
            input:
                [f"{_shard_dir}/shard{k}" for k in range(_shards)],
            output:
                _stores,
            log:
                f"{_log}.log",
            benchmark:
                f"{_bench}.tsv",
            params:
                activations=study.canonical(_settings),
                hooks=store_hooks,  # in output order; not a rerun trigger (see above)
            threads: 1
            resources:
                mem_mb=2000,
                runtime=lambda w, attempt: scheduler.scaled(10, attempt),
                cpus_per_task=1,
            conda:
                CONDA_ENV
            script:
                "../scripts/activations_join.py"
