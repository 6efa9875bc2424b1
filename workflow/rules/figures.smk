# One rule per figure. Only these rules declare the style file, so restyling reruns figures and nothing else.
STYLE = config.get("figures", {}).get("style", "workflow/report/figure_style.json")


rule fig1_matched_cosine:
    """Fig 1: matched cosine of encoder and decoder rows, coloured by whether the two matchings agree."""
    input:
        matches=[f"{d}/matches/seed{SEEDS[0]}-seed{SEEDS[1]}.parquet" for d in sae_dirs()],
        style=STYLE,
    output:
        html=report(f"{RESULTS}/figures/fig1_matched_cosine.html", caption="../report/fig1_matched_cosine.rst", category="Figures"),
        png=report(f"{RESULTS}/figures/fig1_matched_cosine.png", caption="../report/fig1_matched_cosine.rst", category="Figures"),
    log:
        "logs/figures/fig1_matched_cosine.log",
    params:
        labels=site_sae_labels(),
        threshold=config["match"]["threshold"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    script:
        "../scripts/fig1_matched_cosine.py"


rule fig2_only_in_base:
    """Fig 2: fraction of latents only in the base SAE vs number of seeds, with power-law fits."""
    input:
        subsets=[f"{d}/orphans/subsets.parquet" for d in sae_dirs()],
        style=STYLE,
    output:
        html=report(f"{RESULTS}/figures/fig2_only_in_base.html", caption="../report/fig2_only_in_base.rst", category="Figures"),
        png=report(f"{RESULTS}/figures/fig2_only_in_base.png", caption="../report/fig2_only_in_base.rst", category="Figures"),
        fits=f"{RESULTS}/figures/fig2_powerlaw_fits.json",
    log:
        "logs/figures/fig2_only_in_base.log",
    params:
        labels=site_sae_labels(),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    script:
        "../scripts/fig2_only_in_base.py"


rule fig3_firing:
    """Fig 3: firing frequency of the first seed's latents, grouped by how many other seeds share them."""
    input:
        latents=[f"{d}/orphans/latents.parquet" for d in sae_dirs()],
        style=STYLE,
    output:
        html=report(f"{RESULTS}/figures/fig3_firing.html", caption="../report/fig3_firing.rst", category="Figures"),
        png=report(f"{RESULTS}/figures/fig3_firing.png", caption="../report/fig3_firing.rst", category="Figures"),
    log:
        "logs/figures/fig3_firing.log",
    params:
        labels=site_sae_labels(),
        base=SEEDS[0],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    script:
        "../scripts/fig3_firing.py"
