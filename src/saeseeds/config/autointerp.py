"""The `autointerp` section of a study config: which (site, sae) get explained, on which two seeds, and checks
that fail before any job runs (with the key in the message)."""

from __future__ import annotations

from typing import Any

from saeseeds.config.study import ConfigError, Site, has_site, is_external, sae_seeds, site_activations, site_saes

SYNTHETIC = "synthetic"
EXAMPLE_KEYS = ("window", "explain_examples", "score_active", "score_inactive", "n_quantiles", "explain_tokens", "seed")
SCORING_KEYS = ("examples_per_prompt", "explain_max_tokens", "detect_max_tokens", "seed")


def section(config: dict[str, Any]) -> dict[str, Any] | None:
    """Returns the `autointerp` section, or None when the study has none (autointerp off)."""
    return config.get("autointerp")


def seeds(config: dict[str, Any]) -> tuple[int, int]:
    """Returns the two seeds (a < b) whose latents are explained: `autointerp.seeds`, else the study's first two."""
    chosen = section(config).get("seeds") or sorted(config["seeds"])[:2]
    return tuple(sorted(chosen))  # type: ignore[return-value]


def site_saes_explained(config: dict[str, Any]) -> list[tuple[Site, str]]:
    """Returns every (site, sae) whose latents are explained: the listed variants at the listed sites
    (`autointerp.sites`, model/dataset/hook; default every language-model site)."""
    ai = section(config)
    if not ai:
        return []
    names, paths = ai["saes"], ai.get("sites")
    return [
        (site, sae) for site, sae in site_saes(config)
        if sae in names and has_site(site) and config["models"][site.model]["source"] != SYNTHETIC and (paths is None or site.path in paths)
    ]


def check(config: dict[str, Any]) -> None:
    """Raises ConfigError for an autointerp section that names unknown variants or seeds, or cannot cut windows."""
    ai = section(config)
    if not ai:
        return
    for name in ai["saes"]:
        if name not in config["saes"]:
            raise ConfigError(f"config key 'autointerp.saes': '{name}' is not defined under 'saes'")
        if is_external(config, name):
            raise ConfigError(
                f"config key 'autointerp.saes': '{name}' is an external set; autointerp runs an SAE's own encoder and decoder, "
                "which saeseeds keeps only for the sets it trains"
            )
    known = {site.path for site, _ in site_saes(config)}
    for path in ai.get("sites") or []:
        if path not in known:
            raise ConfigError(f"config key 'autointerp.sites': '{path}' is not a site of the study (model/dataset/hook; known: {sorted(known)})")
    explained = site_saes_explained(config)
    if not explained:
        raise ConfigError(f"config key 'autointerp.saes': none of {ai['saes']} is trained at a language-model site")
    a, b = seeds(config)
    if a == b:
        raise ConfigError(f"config key 'autointerp.seeds': needs two different seeds, got {[a, b]}")
    window = ai.get("window", 32)
    for site, sae in explained:
        if not {a, b} <= set(sae_seeds(config, sae)):
            raise ConfigError(f"config key 'autointerp.seeds': {[a, b]} are not both seeds of SAE '{sae}' ({sae_seeds(config, sae)})")
        context = site_activations(config, site.model, site.dataset, site.hook).get("context_length", 256)
        if context % window:
            raise ConfigError(f"config key 'autointerp.window': {window} does not divide the context length {context} of {site.path}")
    backend = ai.get("backend", {"kind": "transformers"})
    if backend.get("kind") == "openai" and not ("base_url" in backend and "model" in backend):
        raise ConfigError("config key 'autointerp.backend': kind openai needs base_url and model")


def example_settings(config: dict[str, Any]) -> dict[str, Any]:
    """Returns the keys of `autointerp` that saeseeds.autointerp.examples.ExampleConfig takes."""
    return {k: v for k, v in section(config).items() if k in EXAMPLE_KEYS}


def scoring_settings(config: dict[str, Any]) -> dict[str, Any]:
    """Returns the keys of `autointerp` that saeseeds.autointerp.explain_score.AutointerpConfig takes."""
    return {k: v for k, v in section(config).items() if k in SCORING_KEYS}


def n_prompts(config: dict[str, Any], sae: str) -> int:
    """Returns the number of model calls one (site, sae) needs: per explained latent of both seeds, one
    explanation and the detection prompts."""
    ai = section(config)
    n = ai.get("n_latents") or config["saes"][sae]["num_latents"]
    texts = ai.get("score_active", 20) + ai.get("score_inactive", 20)
    return 2 * n * (1 + -(-texts // ai.get("examples_per_prompt", 1)))


def autointerp_minutes(config: dict[str, Any], sae: str) -> int:
    """Returns the minutes an autointerp job reserves: ~0.5 s per prompt in process (measured ~0.3 s batched on
    2 cores for SmolLM2-135M), 2 s per prompt over HTTP divided by the concurrency; twice that, plus 10."""
    ai = section(config)
    backend = ai.get("backend", {"kind": "transformers"})
    per_prompt = 0.5 if backend.get("kind", "transformers") == "transformers" else 2.0 / backend.get("concurrency", 8)
    return int(10 + 2 * n_prompts(config, sae) * per_prompt / 60)
