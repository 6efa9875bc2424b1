# One rule per figure. Only these rules declare the style file, so restyling reruns figures and nothing else.
STYLE = config.get("figures", {}).get("style", "workflow/report/figure_style.json")
FIGURES = ["fig1_matched_cosine", "fig2_only_in_base", "fig3_firing", "fig4_ablations", "fig5_layers",
           "figA1_labellings", "figA2_encoder_cosines", "figA3_decoder_cosines"]
SUMMARY_PARQUET = f"{RESULTS}/summary.parquet"


def figure_targets():
    return expand(f"{RESULTS}/figures/{{name}}.{{ext}}", name=FIGURES, ext=["html", "png"])


def main_variants():
    """(folder, label, sae) of every (site, sae) trained on all the study's seeds: Figs 1-3 draw these,
    not the ablation and layer-sweep variants trained on fewer seeds."""
    return [(d, label, sae) for d, label, (_, sae) in zip(sae_dirs(), site_sae_labels(), SITE_SAES) if seeds_of(sae) == SEEDS]


def first_pair(d, sae):
    a, b = pairs_of(sae)[0]
    return f"{d}/matches/seed{a}-seed{b}.parquet"


def figure_outputs(name, caption=None):
    caption = caption or f"../report/{name}.rst"
    return {
        "html": report(f"{RESULTS}/figures/{name}.html", caption=caption, category="Figures"),
        "png": report(f"{RESULTS}/figures/{name}.png", caption=caption, category="Figures"),
    }


def cosine_variant():
    """(folder, label, sae) of the variant Figs A2/A3 show: figures.cosine_sae at the first site training it."""
    sae = study.baseline_sae(config, "cosine_sae")
    return next((d, label, s) for d, label, (_, s) in zip(sae_dirs(), site_sae_labels(), SITE_SAES) if s == sae)


rule fig1_matched_cosine:
    """Fig 1: matched cosine of encoder and decoder rows, coloured by whether the two matchings agree."""
    input:
        matches=[first_pair(d, sae) for d, _, sae in main_variants()],
        style=STYLE,
    output:
        **figure_outputs("fig1_matched_cosine"),
    log:
        "logs/figures/fig1_matched_cosine.log",
    benchmark:
        "logs/benchmarks/figures/fig1_matched_cosine.tsv",
    params:
        labels=[label for _, label, _ in main_variants()],
        threshold=config["match"]["threshold"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/fig1_matched_cosine.py"


rule fig2_only_in_base:
    """Fig 2: fraction of latents only in the base SAE vs number of seeds, with power-law fits and their table."""
    input:
        subsets=[f"{d}/orphans/subsets.parquet" for d, _, _ in main_variants()],
        style=STYLE,
    output:
        **figure_outputs("fig2_only_in_base"),
        fits=f"{RESULTS}/figures/fig2_powerlaw_fits.json",
        table_csv=f"{RESULTS}/figures/fig2_powerlaw_fits.csv",
        table_html=report(f"{RESULTS}/figures/fig2_powerlaw_fits.html", caption="../report/fig2_powerlaw_fits.rst", category="Figures"),
    log:
        "logs/figures/fig2_only_in_base.log",
    benchmark:
        "logs/benchmarks/figures/fig2_only_in_base.tsv",
    params:
        labels=[label for _, label, _ in main_variants()],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/fig2_only_in_base.py"


rule fig3_firing:
    """Fig 3: firing frequency of the first seed's latents, grouped by how many other seeds share them."""
    input:
        latents=[f"{d}/orphans/latents.parquet" for d, _, _ in main_variants()],
        style=STYLE,
    output:
        **figure_outputs("fig3_firing"),
    log:
        "logs/figures/fig3_firing.log",
    benchmark:
        "logs/benchmarks/figures/fig3_firing.tsv",
    params:
        labels=[label for _, label, _ in main_variants()],
        base=SEEDS[0],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/fig3_firing.py"


rule fig4_ablations:
    """Fig 4: shared fraction vs latents, k, training tokens and by architecture, against the baseline variant."""
    input:
        summary=SUMMARY_PARQUET,
        style=STYLE,
    output:
        **figure_outputs("fig4_ablations"),
    log:
        "logs/figures/fig4_ablations.log",
    benchmark:
        "logs/benchmarks/figures/fig4_ablations.tsv",
    params:
        baseline=study.baseline_sae(config),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/fig4_ablations.py"


rule fig5_layers:
    """Fig 5: shared fraction by layer, MLP output vs residual stream, per model."""
    input:
        summary=SUMMARY_PARQUET,
        style=STYLE,
    output:
        **figure_outputs("fig5_layers"),
    log:
        "logs/figures/fig5_layers.log",
    benchmark:
        "logs/benchmarks/figures/fig5_layers.tsv",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/fig5_layers.py"


rule figA1_labellings:
    """Fig A1: shared fraction by Hungarian labelling vs by max-cos labelling, per site and SAE."""
    input:
        summary=SUMMARY_PARQUET,
        style=STYLE,
    output:
        **figure_outputs("figA1_labellings"),
    log:
        "logs/figures/figA1_labellings.log",
    benchmark:
        "logs/benchmarks/figures/figA1_labellings.tsv",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        CONDA_ENV
    script:
        "../scripts/figA1_labellings.py"


for _name, _side in (("figA2_encoder_cosines", "enc"), ("figA3_decoder_cosines", "dec")):

    rule:
        name:
            _name
        input:
            matches=first_pair(cosine_variant()[0], cosine_variant()[2]),
            style=STYLE,
        output:
            **figure_outputs(_name, caption="../report/figA2_A3_cosines.rst"),
        log:
            f"logs/figures/{_name}.log",
        benchmark:
            f"logs/benchmarks/figures/{_name}.tsv",
        params:
            side=_side,
            label=cosine_variant()[1],
            threshold=config["match"]["threshold"],
        threads: 1
        resources:
            mem_mb=2000,
            runtime=5,
        conda:
            CONDA_ENV
        script:
            "../scripts/figA2_A3_cosines.py"
