rule train:
    """Train one SAE on one site's activations with one initialisation seed."""
    input:
        f"{RESULTS}/{SITE}/activations.zarr",
    output:
        cfg=f"{SAE_DIR}/seed{{seed}}/cfg.json",
        weights=f"{SAE_DIR}/seed{{seed}}/sae.safetensors",
        metrics=f"{SAE_DIR}/seed{{seed}}/metrics.json",
        firing=f"{SAE_DIR}/seed{{seed}}/firing.npy",
    log:
        f"logs/train/{SITE}/{{sae}}/seed{{seed}}.log",
    params:
        sae=lambda w: config["saes"][w.sae],
        train=config.get("train", {}),
        data_seed=config["data_seed"],
    threads: config.get("train", {}).get("threads", 2)
    resources:
        mem_mb=lambda w: estimates.train_mem_mb(config, w.model, w.sae),
        runtime=lambda w: estimates.train_minutes(config, w.model, w.sae),
        disk_mb=lambda w: estimates.checkpoint_disk_mb(config, w.model, w.sae),
        gpu=1 if config.get("train", {}).get("device", "cpu").startswith("cuda") else 0,
    script:
        "../scripts/train.py"
