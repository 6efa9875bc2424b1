# Consistency over training (beyond the paper; Song et al. 2025 track it over checkpoints): SAE variants with
# `snapshots` write checkpoints along training (rules train_seeds_*_snapshots); one job per SAE set matches
# the seeds at each of them, and Fig X2 draws the curves next to the separate-run token ablation of Fig 4.


def trajectory_saes():
    """(folder, label, sae) of every (site, sae) trained with checkpoints along training on two or more seeds."""
    return [(d, label, sae) for d, label, (_, sae) in zip(sae_dirs(), site_sae_labels(), SITE_SAES)
            if study.sae_snapshots(config, sae) > 0 and len(seeds_of(sae)) >= 2]


def trajectory_targets():
    """The trajectory tables and Fig X2, when some SAE set has checkpoints along training."""
    if not trajectory_saes():
        return []
    tables = [f"{d}/trajectory.{ext}" for d, _, _ in trajectory_saes() for ext in ("parquet", "csv")]
    return tables + [f"{RESULTS}/figures/figX2_trajectory.{ext}" for ext in ("html", "png")]


if trajectory_saes():

    localrules:
        figX2_trajectory,

    rule trajectory:
        """Match the seeds of one SAE set at each checkpoint along training (the final step from its matches files)."""
        input:
            steps=lambda w: [f"{RESULTS}/{w.model}/{w.dataset}/{w.hook}/{w.sae}/seed{s}/snapshots/steps.json" for s in seeds_of(w.sae)],
            checkpoints=lambda w: [f for s in seeds_of(w.sae) for f in checkpoint_files(w, s)],
            matches=lambda w: pair_matches(f"{RESULTS}/{w.model}/{w.dataset}/{w.hook}/{w.sae}", w.sae),
        output:
            parquet=f"{SAE_DIR}/trajectory.parquet",
            csv=f"{SAE_DIR}/trajectory.csv",
        log:
            f"logs/trajectory/{SITE}/{{sae}}.log",
        benchmark:
            f"logs/benchmarks/trajectory/{SITE}/{{sae}}.tsv",
        wildcard_constraints:
            sae="|".join(re.escape(sae) for sae in dict.fromkeys(s for _, _, s in trajectory_saes())),
        params:
            seeds=lambda w: seeds_of(w.sae),
            threshold=config["match"]["threshold"],
            device=config["match"]["device"],
        threads: 1
        priority: 10  # needs only the main set: runs beside the ablations' training
        resources:
            mem_mb=lambda w, attempt: scheduler.scaled(estimates.match_mem_mb(config, w.model, w.sae), attempt),
            # every pair at each intermediate checkpoint (the final one is read, not matched)
            runtime=lambda w, attempt: scheduler.scaled(
                max(1, study.sae_snapshots(config, w.sae) - 1) * len(pairs_of(w.sae)) * estimates.match_minutes(config, w.model, w.sae), attempt),
            cpus_per_task=1,
            gpu=MATCH_GPUS,
            **(scheduler.gpu_model_resources(config) if MATCH_GPUS else {}),
        conda:
            CONDA_ENV
        script:
            "../scripts/trajectory.py"

    rule figX2_trajectory:
        """Fig X2: shared fraction and mean matched decoder |cos| against tokens seen, next to the token ablation."""
        input:
            trajectories=[f"{d}/trajectory.parquet" for d, _, _ in trajectory_saes()],
            summary=SUMMARY_PARQUET,
            style=STYLE,
        output:
            **figure_outputs("figX2_trajectory"),
        log:
            "logs/figures/figX2_trajectory.log",
        benchmark:
            "logs/benchmarks/figures/figX2_trajectory.tsv",
        params:
            labels=[label for _, label, _ in trajectory_saes()],
            baseline=study.baseline_sae(config),
        threads: 1
        resources:
            mem_mb=2000,
            runtime=5,
        conda:
            CONDA_ENV
        script:
            "../scripts/figX2_trajectory.py"
