"""The synthetic sites' part of config validation: `synthetic:` blocks and the pairing of synthetic models and datasets."""

from __future__ import annotations

from typing import Any

from saeseeds.errors import ConfigError, SyntheticError
from saeseeds.synthetic.generator import SOURCE, SyntheticConfig


def check(config: dict[str, Any]) -> None:
    """Raises ConfigError unless synthetic models have valid `synthetic:` blocks and pair with synthetic datasets.

    A synthetic site generates its rows, so its dataset must say so (`source: synthetic`) rather than
    name a corpus that would be silently ignored; and real models must not carry a `synthetic:` block.
    """
    for name, entry in config["models"].items():
        is_synthetic = entry["source"] == SOURCE
        if is_synthetic != ("synthetic" in entry):
            raise ConfigError(
                f"config key 'models.{name}.synthetic': needed exactly when source is '{SOURCE}' "
                f"(source is '{entry['source']}')"
            )
        if is_synthetic:
            try:
                SyntheticConfig.from_dict(entry["synthetic"])
            except SyntheticError as err:
                raise ConfigError(f"config key 'models.{name}.synthetic': {err}") from err
    for i, site in enumerate(config["sites"]):
        model = config["models"][site["model"]]["source"] == SOURCE
        data = config["datasets"][site["dataset"]]["source"] == SOURCE
        if model != data:
            raise ConfigError(
                f"config key 'sites.{i}': model '{site['model']}' and dataset '{site['dataset']}' must both be "
                f"'{SOURCE}' or both not"
            )
