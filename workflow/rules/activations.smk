# Caching: one job per (model, dataset, activations settings) serves every hook of that model there with one
# forward pass per batch, stopped after the deepest hook (the default study's six SmolLM2 hooks cost one
# pass to layer 10 instead of six). Rules are named activations_<i>, i counting these groups in config order.
# Adding a hook to a group recaches the group's other hooks too (one job makes all its stores).
import json

from saeseeds import synthetic as _synthetic


def activation_groups():
    """Returns [(model, dataset, settings, [hooks])]: the hooks one caching job serves, in config order."""
    groups = {}
    for site in SITES:
        if config["models"][site.model]["source"] == _synthetic.SOURCE:
            continue  # generated, not cached (rules/synthetic.smk)
        acts = study.site_activations(config, site.model, site.dataset, site.hook)
        settings = {k: v for k, v in acts.items() if k != "threads"}
        key = (site.model, site.dataset, json.dumps(study.canonical(settings)))
        groups.setdefault(key, (settings, acts.get("threads"), []))[2].append(site.hook)
    return [(model, dataset, settings, threads, list(dict.fromkeys(hooks))) for (model, dataset, _), (settings, threads, hooks) in groups.items()]


for _i, (_model, _dataset, _settings, _threads, _hooks) in enumerate(activation_groups()):

    rule:
        name:
            f"activations_{_i}"
        output:
            [directory(f"{RESULTS}/{_model}/{_dataset}/{hook}/activations.zarr") for hook in _hooks],
        log:
            f"logs/activations/{_model}/{_dataset}/{'+'.join(_hooks)}.log",
        params:
            model=study.canonical(config["models"][_model]),
            dataset=study.canonical(config["datasets"][_dataset]),
            activations=study.canonical(_settings),
            hooks=_hooks,  # in output order
        threads: _threads or local_cores()
        resources:
            mem_mb=lambda w, attempt, m=_model: scheduler.scaled(estimates.activations_mem_mb(estimates.d_model(config, m)), attempt),
            runtime=lambda w, attempt, m=_model, s=_settings, h=_hooks: scheduler.scaled(
                estimates.activations_minutes(s, estimates.d_model(config, m), h, flops=estimates.forward_flops(config, s.get("device", "cpu"))), attempt
            ),
            disk_mb=len(_hooks) * estimates.activations_disk_mb(_settings, estimates.d_model(config, _model)),
            cpus_per_task=_threads or local_cores(),
            gpu=scheduler.gpus(config, _settings.get("device", "cpu")),
            **(scheduler.gpu_model_resources(config) if scheduler.gpus(config, _settings.get("device", "cpu")) else {}),
        conda:
            CONDA_ENV
        script:
            "../scripts/activations.py"
