# External SAE sets (`saes: {NAME: {checkpoints: [...]}}`): one job per checkpoint writes the seed folder that
# match, chance, orphans, stability, summary and the figures read, as training does for trained sets.
EXTERNAL_SAES = [name for name in config["saes"] if study.is_external(config, name)]


if EXTERNAL_SAES:

    def external_rows(w):
        """The site's cached store (firing frequencies through the checkpoint's own encoder), or none: no site, or a
        site computed on the fly."""
        return activations_input(w) if has_site(w) else []


    def external_no_rows(w):
        """Why an external seed gets no rows to encode, for its log and metrics.json (None when it gets them)."""
        if not has_site(w):
            return "the set is listed under no site, so there are no activations to encode"
        return None if activations_input(w) else "the site's activations are computed on the fly, not cached"


    rule import_checkpoint:
        """Bring one existing checkpoint (any layout, local or a pinned hub reference) in as seed {seed} of its set."""
        input:
            store=external_rows,
        output:
            cfg=f"{SAE_DIR}/seed{{seed}}/cfg.json",
            weights=f"{SAE_DIR}/seed{{seed}}/sae.safetensors",
            firing=f"{SAE_DIR}/seed{{seed}}/firing.npy",
            metrics=f"{SAE_DIR}/seed{{seed}}/metrics.json",
        wildcard_constraints:
            sae="|".join(re.escape(s) for s in EXTERNAL_SAES),
        log:
            f"logs/import_checkpoint/{SITE}/{{sae}}/seed{{seed}}.log",
        benchmark:
            f"logs/benchmarks/import_checkpoint/{SITE}/{{sae}}/seed{{seed}}.tsv",
        params:
            reference=lambda w: study.external_checkpoints(config, w.sae)[int(w.seed)],
            no_rows=external_no_rows,
        threads: 1
        resources:
            mem_mb=lambda w: 1500 + 3 * estimates.checkpoint_disk_mb(config, w.model, w.sae),
            runtime=10,
            disk_mb=lambda w: estimates.checkpoint_disk_mb(config, w.model, w.sae),
        conda:
            CONDA_ENV
        script:
            "../scripts/import_checkpoint.py"
