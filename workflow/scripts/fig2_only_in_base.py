"""Fig 2: only-in-base fraction vs number of seeds, with power-law fits and their table (rule fig2_only_in_base)."""
import json
from pathlib import Path

from saeseeds.common.atomic import atomic_write
from saeseeds.figures.paper import fig2_only_in_base
from saeseeds.figures.style import load_style, read_labelled, save_chart
from saeseeds.stats.jackknife import subset_intervals
from saeseeds.common.logs import rule_log
from saeseeds.stats.powerlaw import MIN_POINTS_PLAIN, fit_only_in_base, fits_table
from saeseeds.stats.summary import table_html

sm = snakemake  # noqa: F821 (provided by Snakemake)
with rule_log(sm.log[0]) as log:
    style = load_style(sm.input.style)
    subsets = read_labelled(list(zip(sm.params.labels, sm.input.subsets)))
    fits, intervals = {}, {}
    for label, group in subsets.groupby("label", sort=False):
        if group["size"].nunique() >= MIN_POINTS_PLAIN:
            fits[label] = fit_only_in_base(group)
            # Seed-level uncertainty (leave-one-seed-out jackknife), the same function the summary uses.
            intervals[label] = subset_intervals(group)
        else:
            log.warning("%s: %d subset sizes, too few to fit a power law", label, group["size"].nunique())
    save_chart(fig2_only_in_base(subsets, fits, style=style, intervals=intervals), sm.output.html, sm.output.png, ppi=style.ppi)
    # No F-test p-value anywhere: the curve's points share their SAEs (saeseeds.stats.powerlaw); the jackknife instead.
    payload = {k: {key: v for key, v in f.to_dict().items() if key != "f_pvalue"}
               | {"seed_jackknife": {key: (None if v != v else v) for key, v in intervals[k].items()}}
               for k, f in fits.items()}
    text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=False)
    atomic_write(sm.output.fits, lambda tmp: Path(tmp).write_text(text))
    table = fits_table(fits, intervals)
    atomic_write(sm.output.table_csv, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6g"))
    page = table_html(table, "Power-law fits of only-in-base vs number of seeds (± standard errors; seed-jackknife 95% intervals of c and ΔAIC; F descriptive only)")
    atomic_write(sm.output.table_html, lambda tmp: Path(tmp).write_text(page))
    log.info("fits:\n%s", table.to_string())
