"""The `functional` section of a study config: which (site, sae) get loss recovered and the substitution test,
and checks that fail before any job runs (with the key in the message)."""

from __future__ import annotations

from typing import Any

from saeseeds.config.study import ConfigError, Site, has_site, is_external, sae_seeds, site_activations, site_saes

SYNTHETIC = "synthetic"


def section(config: dict[str, Any]) -> dict[str, Any] | None:
    """Returns the `functional` section, or None when the study has none (functional stages off)."""
    return config.get("functional")


def site_saes_measured(config: dict[str, Any]) -> list[tuple[Site, str]]:
    """Returns every (site, sae) measured: the listed variants at the listed sites (`functional.sites`,
    model/dataset/hook; default every language-model site training them), in the study's order."""
    fn = section(config)
    if not fn:
        return []
    names, paths = fn["saes"], fn.get("sites")
    return [
        (site, sae) for site, sae in site_saes(config)
        if sae in names and has_site(site) and config["models"][site.model]["source"] != SYNTHETIC and (paths is None or site.path in paths)
    ]


def by_site(config: dict[str, Any]) -> dict[Site, list[str]]:
    """Returns {site: its measured variants}: one loss-recovered job per site loads the model once for all of them."""
    out: dict[Site, list[str]] = {}
    for site, sae in site_saes_measured(config):
        out.setdefault(site, []).append(sae)
    return out


def model_site_saes(config: dict[str, Any]) -> list[tuple[Site, str]]:
    """Returns the measured (site, sae) whose substitution is also tested through the model: those of
    `functional.model_saes` (default the first of `functional.saes`)."""
    fn = section(config)
    if not fn:
        return []
    names = fn.get("model_saes", fn["saes"][:1])
    return [(site, sae) for site, sae in site_saes_measured(config) if sae in names]


def pair(config: dict[str, Any], sae: str) -> tuple[int, int]:
    """Returns the seed pair (a < b) of the substitution test: `functional.pair`, else the variant's first two seeds."""
    chosen = section(config).get("pair") or sae_seeds(config, sae)[:2]
    return tuple(sorted(chosen))  # type: ignore[return-value]


def check(config: dict[str, Any]) -> None:
    """Raises ConfigError for a functional section naming unknown variants or sites, seeds a variant lacks, or
    more held-out contexts than a site keeps."""
    fn = section(config)
    if not fn:
        return
    for name in fn["saes"]:
        if name not in config["saes"]:
            raise ConfigError(f"config key 'functional.saes': '{name}' is not defined under 'saes'")
        if is_external(config, name):
            raise ConfigError(
                f"config key 'functional.saes': '{name}' is an external set; functional runs an SAE's own encoder and decoder, "
                "which saeseeds keeps only for the sets it trains"
            )
    known = {site.path for site, _ in site_saes(config)}
    for path in fn.get("sites") or []:
        if path not in known:
            raise ConfigError(f"config key 'functional.sites': '{path}' is not a site of the study (model/dataset/hook; known: {sorted(known)})")
    measured = site_saes_measured(config)
    if not measured:
        raise ConfigError(f"config key 'functional.saes': none of {fn['saes']} is trained at a language-model site")
    for name in fn.get("model_saes", []):
        if name not in fn["saes"]:
            raise ConfigError(f"config key 'functional.model_saes': '{name}' is not one of functional.saes {fn['saes']}")
    for site, sae in measured:
        seeds = sae_seeds(config, sae)
        a, b = pair(config, sae)
        if a == b or not {a, b} <= set(seeds):
            raise ConfigError(f"config key 'functional.pair': {[a, b]} are not two seeds of SAE '{sae}' ({seeds})")
        acts = site_activations(config, site.model, site.dataset, site.hook)
        length = acts.get("context_length", 256)
        heldout = -(-acts["heldout_tokens"] // length)
        if fn.get("contexts", 4) > heldout:
            raise ConfigError(f"config key 'functional.contexts': {fn.get('contexts', 4)} exceeds the {heldout} held-out contexts of {site.path}")
