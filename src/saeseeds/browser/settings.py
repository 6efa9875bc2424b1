"""What the browser rule reads at every Snakemake start, without torch: the context settings and the page's files."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

TEMPLATE_FILES = ("index.html", "browser.js", "browser.css")


def template_files() -> list[Path]:
    """Returns the paths of the page's template files (the rule lists them as inputs: editing the page rebuilds browsers)."""
    return [Path(str(resources.files("saeseeds.browser") / "template" / name)) for name in TEMPLATE_FILES]


@dataclass(frozen=True)
class ContextConfig:
    """How many contexts of what length the browser shows per latent, searched in how many tokens."""

    examples: int = 5
    """Contexts shown per latent (the strongest, at most one per aligned window of `window` tokens)."""
    window: int = 16
    """Tokens per context, centred on the peak token and kept inside its own context."""
    tokens: int = 16384
    """Rows of the store searched, from the start; cost grows with tokens x latents x d."""
    bins: int = 20
    """Histogram bins, equal width from 0 to the latent's largest activation."""
    batch_rows: int = 2048

    def __post_init__(self) -> None:
        for name in ("examples", "window", "tokens", "bins", "batch_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"browser.{name} must be >= 1, got {getattr(self, name)}")
