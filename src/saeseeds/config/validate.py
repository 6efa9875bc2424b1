"""The one entry point of config validation: every check a study config must pass before any job runs.

The workflow (`workflow/rules/common.smk`) calls `validate_config` once; `saeseeds plan` calls it beside its dry
run. A config that validates runs to the end: every check that could otherwise stop a job later (a figure with
nothing to draw, a section naming a set that is not trained) is here, and names the key that is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saeseeds.config import autointerp, functional, synthetic
from saeseeds.config.study import SCHEMA, check_study, check_training, sae_seeds, site_saes, validate_schema
from saeseeds.errors import ConfigError


def validate_config(config: dict[str, Any], schema_path: str | Path = SCHEMA) -> dict[str, Any]:
    """Returns the config with defaults filled in after every check: schema, cross-key, synthetic sites, the
    autointerp and functional sections, Figures 1-3's sets and the trainer's config objects; raises ConfigError
    naming the key and value at the first problem."""
    validate_schema(config, schema_path)
    check_study(config)
    synthetic.check(config)
    check_main_sets(config)
    autointerp.check(config)
    functional.check(config)
    check_training(config)
    return config


def check_main_sets(config: dict[str, Any]) -> None:
    """Raises ConfigError when no SAE set is trained on the study's full `seeds` list: Figures 1-3 draw those sets
    (the ablations and layer sweeps run fewer seeds), and with none they would have nothing to draw."""
    seeds = sorted(config["seeds"])
    if not any(sae_seeds(config, sae) == seeds for _, sae in site_saes(config)):
        raise ConfigError(
            f"config key 'seeds': no SAE set at any site is trained on all of {seeds} (each lists its own 'seeds'), so "
            "Figures 1-3, which compare the sets trained on the study's seeds, would have nothing to draw; set 'seeds' "
            "to the seeds of the set those figures should show"
        )
