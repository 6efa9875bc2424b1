rule activations:
    """Cache the hooked activations of one site (model, dataset, hook) as a zarr v3 store."""
    output:
        directory(f"{RESULTS}/{SITE}/activations.zarr"),
    log:
        f"logs/activations/{SITE}.log",
    params:
        model=lambda w: study.canonical(config["models"][w.model]),
        dataset=lambda w: study.canonical(config["datasets"][w.dataset]),
        activations=lambda w: study.canonical(site_activations(w)),
    threads: workflow.cores
    resources:
        mem_mb=lambda w: estimates.activations_mem_mb(estimates.d_model(config, w.model)),
        runtime=lambda w: estimates.activations_minutes(site_activations(w), estimates.d_model(config, w.model), w.hook),
        disk_mb=lambda w: estimates.activations_disk_mb(site_activations(w), estimates.d_model(config, w.model)),
        gpu=lambda w: int(site_activations(w).get("device", "cpu").startswith("cuda")),
    script:
        "../scripts/activations.py"
