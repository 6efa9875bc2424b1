"""Fig 2: only-in-base fraction vs number of seeds, with power-law fits (rule fig2_only_in_base)."""
import json
from pathlib import Path

from saeseeds.figures import fig2_only_in_base, load_style, read_labelled, save_chart
from saeseeds.logs import rule_log
from saeseeds.powerlaw import MIN_POINTS_PLAIN, fit_only_in_base

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    style = load_style(sm.input.style)
    subsets = read_labelled(list(zip(sm.params.labels, sm.input.subsets)))
    fits = {}
    for label, group in subsets.groupby("label", sort=False):
        if group["size"].nunique() >= MIN_POINTS_PLAIN:
            fits[label] = fit_only_in_base(group)
        else:
            log.warning("%s: %d subset sizes, too few to fit a power law", label, group["size"].nunique())
    save_chart(fig2_only_in_base(subsets, fits, style=style), sm.output.html, sm.output.png, ppi=style.ppi)
    out = Path(sm.output.fits)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps({k: f.to_dict() for k, f in fits.items()}, indent=2, sort_keys=True, allow_nan=False))
    tmp.rename(out)
