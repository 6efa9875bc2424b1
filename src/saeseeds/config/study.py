"""A study config: validation beyond the JSON schema, and the list of outputs it implies.

The schema (workflow/schemas/config.schema.yaml) checks types and ranges key by key; this module checks
what a schema cannot (names that must refer to each other, sizes that must fit together), so a bad
config fails before any job runs, with the key that is wrong in the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import yaml
from saeseeds.errors import ConfigError  # noqa: F401 (raised here; importable from here too)

SCHEMA = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"


CHANCE_SEEDS = 3
"""Chance levels (rule chance) use the pairs of at most this many seeds of a variant."""


@dataclass(frozen=True)
class Site:
    """One (model, dataset, hook): the place activations are read from."""

    model: str
    dataset: str
    hook: str

    @property
    def path(self) -> str:
        return f"{self.model}/{self.dataset}/{self.hook}"


NO_SITE = Site("external", "none", "none")
"""Where an external set listed under no site is analysed (results/external/none/none/{sae}/): everything that
needs only its directions (matching, chance by random matching, orphans, power laws, stability, consistency,
summary, browser without contexts, figures); nothing that needs a model's activations (firing frequencies unless
the checkpoint carries them, contexts, autointerp, the functional tests)."""


def has_site(site: Site) -> bool:
    """Returns whether a (site, sae) row has a model and dataset behind it (else it is an external set's NO_SITE)."""
    return site != NO_SITE


def validate_schema(config: dict[str, Any], schema_path: str | Path = SCHEMA) -> dict[str, Any]:
    """Returns the config with schema defaults filled in; raises ConfigError naming the key."""
    import jsonschema

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = _with_defaults(validator_cls)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = [_schema_message(err) for err in errors]
        more = f"\n({len(lines) - 1} more problems above after the first)" if len(lines) > 1 else ""
        raise ConfigError("\n".join(lines) + more)
    return config


def _schema_message(err) -> str:
    """Returns one line naming the key and the bad value of a jsonschema error."""
    path = [str(p) for p in err.absolute_path]
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(err.schema.get("properties", {}))
        unknown = [k for k in err.instance if k not in allowed and not _matches_pattern(k, err.schema)]
        if unknown:
            key = ".".join(path + [str(unknown[0])])
            return f"config key '{key}': unknown key '{unknown[0]}' (allowed here: {', '.join(sorted(allowed))})"
    if err.validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        return f"config key '{'.'.join(path + [missing])}': required but missing"
    key = ".".join(path) or "<top level>"
    value = repr(err.instance)
    value = value if len(value) <= 80 else value[:77] + "..."
    return f"config key '{key}' = {value}: {err.message}"


def _matches_pattern(key: str, schema: dict[str, Any]) -> bool:
    import re

    return any(re.search(pattern, key) for pattern in schema.get("patternProperties", {}))


def _with_defaults(validator_cls):
    """Returns a validator class that fills in `default`s while validating (as snakemake's validate does)."""
    import jsonschema

    validate_properties = validator_cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub:
                    instance.setdefault(prop, sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_cls, {"properties": set_defaults})


def check_study(config: dict[str, Any]) -> None:
    """Raises ConfigError for cross-key problems the schema cannot see."""
    for i, site in enumerate(config["sites"]):
        for key, table in (("model", "models"), ("dataset", "datasets")):
            if site[key] not in config[table]:
                raise ConfigError(
                    f"config key 'sites.{i}.{key}': '{site[key]}' is not defined under '{table}' "
                    f"(defined: {sorted(config[table])})"
                )
        for name in site.get("saes", []):
            if name not in config["saes"]:
                raise ConfigError(f"config key 'sites.{i}.saes': '{name}' is not defined under 'saes'")
    seen: set[tuple[Site, str]] = set()
    for site, name in site_saes(config):
        if (site, name) in seen:
            raise ConfigError(f"config key 'sites': SAE '{name}' is trained twice at {site.path} (two entries list that hook)")
        seen.add((site, name))
    for key in ("baseline", "cosine_sae"):
        name = config.get("figures", {}).get(key)
        if name is not None and name not in config["saes"]:
            raise ConfigError(f"config key 'figures.{key}': '{name}' is not defined under 'saes'")
    acts = config["activations"]
    context = acts.get("context_length", 256)
    if acts["heldout_tokens"] >= acts["max_tokens"]:
        raise ConfigError(
            f"config key 'activations.heldout_tokens': {acts['heldout_tokens']} leaves no training tokens "
            f"out of activations.max_tokens={acts['max_tokens']}"
        )
    for key in ("max_tokens", "heldout_tokens"):
        if acts[key] < context:
            raise ConfigError(f"config key 'activations.{key}': {acts[key]} is less than one context ({context} tokens)")
    for name, sae in config["saes"].items():
        if is_external(config, name):
            recipe = sorted(set(sae) - {"checkpoints", "num_latents"})
            if recipe:
                raise ConfigError(
                    f"config key 'saes.{name}.{recipe[0]}': an external set (checkpoints) is not trained, so it takes "
                    "no recipe key (only num_latents, to size its jobs)"
                )
            external_checkpoints(config, name)  # globs must match, at least 2 checkpoints
            continue
        k = sae.get("k")
        if k is not None and k > sae["num_latents"]:
            raise ConfigError(f"config key 'saes.{name}.k': k={k} exceeds num_latents={sae['num_latents']}")
        if sae.get("batch_size") and sae.get("max_tokens") and sae["batch_size"] > sae["max_tokens"]:
            raise ConfigError(
                f"config key 'saes.{name}.batch_size': {sae['batch_size']} exceeds max_tokens={sae['max_tokens']}"
            )
    _check_hooks(config)
    _check_steps(config)


def _check_hooks(config: dict[str, Any]) -> None:
    """Hooks of models whose layout is known must name one of their modules (saeseeds.activations.layouts)."""
    from saeseeds.activations.layouts import hook_problem

    for i, entry in enumerate(config["sites"]):
        source = config["models"][entry["model"]]["source"]
        for hook in entry["hooks"]:
            problem = hook_problem(source, hook)
            if problem:
                raise ConfigError(f"config key 'sites.{i}.hooks': '{hook}' {problem}")


def training_tokens(acts: dict[str, Any], synthetic_site: bool = False) -> int:
    """Returns the training rows a site's store will hold: whole contexts, held-out contexts rounded up."""
    if synthetic_site:  # generated rows: held-out rows are exactly heldout_tokens
        return acts["max_tokens"] - acts["heldout_tokens"]
    context = acts.get("context_length", 256)
    return (acts["max_tokens"] // context - -(-acts["heldout_tokens"] // context)) * context


def _check_steps(config: dict[str, Any]) -> None:
    """Every SAE must get at least one full batch, and more steps than its warmup, at every site it trains at."""
    for site, name in site_saes(config):
        if is_external(config, name):
            continue  # trains nothing
        sae = config["saes"][name]
        synthetic_site = config["models"][site.model]["source"] == "synthetic"
        n_train = training_tokens(site_activations(config, site.model, site.dataset, site.hook), synthetic_site)
        tokens = sae.get("max_tokens", n_train)
        batch = sae.get("batch_size", 4096)
        if batch > tokens:
            raise ConfigError(
                f"config key 'saes.{name}.batch_size': {batch} exceeds the {tokens} training tokens at {site.path} "
                "(activations.max_tokens minus heldout_tokens, or saes.NAME.max_tokens)"
            )
        if sae.get("batch_order") == "sequences":
            context = site_activations(config, site.model, site.dataset, site.hook).get("context_length", 256)
            if synthetic_site or batch % context:
                raise ConfigError(
                    f"config key 'saes.{name}.batch_order': 'sequences' needs whole contexts at {site.path}: "
                    + ("a synthetic site has none" if synthetic_site else f"batch_size {batch} is not a multiple of context_length {context}")
                )
        steps = tokens // batch
        warmup = sae.get("warmup_steps", 1000)
        if sae.get("optimizer", "adam") == "adam" and warmup >= steps:
            raise ConfigError(
                f"config key 'saes.{name}.warmup_steps': {warmup} is not below the {steps} training steps at "
                f"{site.path} ({tokens} tokens / batch_size {batch})"
            )


def check_training(config: dict[str, Any]) -> None:
    """Raises ConfigError unless every SAE entry builds valid SaeConfig and TrainConfig objects."""
    for name, entry in config["saes"].items():
        if is_external(config, name):
            continue
        try:
            sae_train_configs(entry, config.get("train"))
        except ConfigError:
            raise
        except ValueError as err:
            raise ConfigError(f"config key 'saes.{name}': {err}") from err


def seed_groups(seeds: list[int], per_job: int) -> list[list[int]]:
    """Returns the seeds cut into consecutive groups of `per_job`, each trained by one job."""
    seeds = sorted(seeds)
    return [seeds[i : i + per_job] for i in range(0, len(seeds), per_job)]


def sites(config: dict[str, Any]) -> list[Site]:
    """Returns every (model, dataset, hook) of the study, in config order."""
    return [Site(s["model"], s["dataset"], hook) for s in config["sites"] for hook in s["hooks"]]


def site_saes(config: dict[str, Any]) -> list[tuple[Site, str]]:
    """Returns every (site, sae name) pair the study trains or imports; an external set that no site lists comes
    last, at NO_SITE."""
    out = []
    for entry in config["sites"]:
        names = entry.get("saes", [n for n in config["saes"] if not is_external(config, n)])
        for hook in entry["hooks"]:
            out += [(Site(entry["model"], entry["dataset"], hook), name) for name in names]
    listed = {name for _, name in out}
    return out + [(NO_SITE, name) for name in config["saes"] if is_external(config, name) and name not in listed]


def site_activations(config: dict[str, Any], model: str, dataset: str, hook: str) -> dict[str, Any]:
    """Returns the activations settings of one site: the study's, updated by the first matching site entry's."""
    for entry in config["sites"]:
        if (entry["model"], entry["dataset"]) == (model, dataset) and hook in entry["hooks"]:
            return {**config["activations"], **entry.get("activations", {})}
    raise ConfigError(f"config key 'sites': no entry has model={model}, dataset={dataset}, hook={hook}")


RUN_KEYS = ("threads", "shards", "mode")
"""Activations keys that say how jobs run, not what they compute: the rows are the same whatever their values."""


def row_settings(acts: dict[str, Any]) -> dict[str, Any]:
    """Returns the activations settings that decide the rows (`ActivationConfig`'s fields): all but RUN_KEYS."""
    return {k: v for k, v in acts.items() if k not in RUN_KEYS}


def on_the_fly(config: dict[str, Any], model: str, dataset: str, hook: str) -> bool:
    """Returns whether a site's training jobs compute its activations themselves (`activations.mode:
    on_the_fly`) instead of reading a cache; synthetic sites are always generated once."""
    if config["models"][model]["source"] == "synthetic":
        return False
    return site_activations(config, model, dataset, hook).get("mode", "cache") == "on_the_fly"


def canonical(value: Any) -> Any:
    """Returns `value` with every dict's keys sorted, recursively.

    Rule params go through this so that reordering keys in a YAML file is not a change: Snakemake
    compares params by their text, and would otherwise rerun everything downstream.
    """
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def sae_seeds(config: dict[str, Any], sae: str) -> list[int]:
    """Returns the seeds of one SAE variant: its own `seeds` list, else the study's; for an external set,
    the positions 0..N-1 of its checkpoints (after glob expansion)."""
    if is_external(config, sae):
        return list(range(len(external_checkpoints(config, sae))))
    return sorted(config["saes"][sae].get("seeds", config["seeds"]))


def is_external(config: dict[str, Any], sae: str) -> bool:
    """Returns whether `saes.<sae>` names existing checkpoints (an external set) rather than a training recipe."""
    return "checkpoints" in config["saes"][sae]


def external_checkpoints(config: dict[str, Any], sae: str) -> list[str]:
    """Returns the checkpoint references of an external set, a glob (string or list entries) expanded and sorted."""
    from saeseeds.matching.checkpoint_refs import expand
    from saeseeds.matching.checkpoints import CheckpointError

    given = config["saes"][sae]["checkpoints"]
    try:
        refs = expand([given] if isinstance(given, str) else list(given))
    except CheckpointError as err:
        raise ConfigError(f"config key 'saes.{sae}.checkpoints': {err}") from err
    if len(refs) < 2:
        raise ConfigError(f"config key 'saes.{sae}.checkpoints': {refs} gives {len(refs)} checkpoint(s); a set needs at least 2")
    if len(set(refs)) != len(refs):
        raise ConfigError(f"config key 'saes.{sae}.checkpoints': a checkpoint is listed twice in {refs}")
    return refs


def baseline_sae(config: dict[str, Any], key: str = "baseline") -> str:
    """Returns the SAE variant named by `figures.<key>`, else the first variant of the first site."""
    name = config.get("figures", {}).get(key)
    return name if name is not None else site_saes(config)[0][1]


def sae_snapshots(config: dict[str, Any], sae: str) -> int:
    """Returns how many checkpoints along training an SAE variant writes (its `snapshots`, default 0)."""
    return int(config["saes"][sae].get("snapshots", 0))


def seed_pairs(seeds: list[int]) -> list[tuple[int, int]]:
    """Returns every pair a < b of the study's seeds."""
    return list(combinations(sorted(seeds), 2))


def sae_train_configs(entry: dict[str, Any], train_section: dict[str, Any] | None = None):
    """Returns (SaeConfig, TrainConfig) from one `saes` entry plus the study's `train` section.

    Each key goes to the dataclass that has a field of that name; a key neither has is an error,
    so a typo cannot silently fall back to a default.
    """
    from dataclasses import fields

    from saeseeds.sae.configs import SaeConfig, TrainConfig

    sae_fields = {f.name for f in fields(SaeConfig)}
    train_fields = {f.name for f in fields(TrainConfig)}
    sae_kw, train_kw = {}, {}
    for key, value in {**(train_section or {}), **entry}.items():
        if key in sae_fields:
            sae_kw[key] = value
        elif key in train_fields:
            train_kw[key] = value
        elif key not in ("threads", "seeds_per_job", "seeds"):  # the workflow's, not the trainer's
            raise ConfigError(f"config key '{key}' is neither an SaeConfig nor a TrainConfig field")
    return SaeConfig(**sae_kw), TrainConfig(**train_kw)
