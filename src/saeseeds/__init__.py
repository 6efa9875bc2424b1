"""saeseeds: seed-stability studies of sparse autoencoders.

The workflow (`snakemake`) runs whole studies; in a notebook these functions answer the same questions for
SAEs you already have, in any layout saeseeds reads (sparsify, SAELens, dictionary_learning, plain
safetensors/npz, `hf://owner/repo@revision/path`):

    import saeseeds
    sae = saeseeds.load_checkpoint("ckpt/seed0")                # encoder and decoder rows, layout, firing
    matches, meta = saeseeds.match("ckpt/seed0", "ckpt/seed1")  # exact matching, one row per latent of seed 0
    table, meta = saeseeds.stability_table(["ckpt/seed0", "ckpt/seed1", "ckpt/seed2"])
    pairs = {(a, b): saeseeds.match(f"ckpt/seed{a}", f"ckpt/seed{b}") for a, b in [(0, 1), (0, 2), (1, 2)]}
    subsets, latents = saeseeds.orphan_statistics(pairs)       # only-in-base per subset of seeds, n_shared per latent
    fits = saeseeds.fit_power_laws(subsets)                     # plain and offset power law of only-in-base

Each is imported on first use (torch takes seconds to import), so `import saeseeds` is instant.
"""

from __future__ import annotations

from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

try:
    __version__ = _metadata.version("saeseeds")
except _metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["load_checkpoint", "match", "stability_table", "orphan_statistics", "fit_power_laws", "__version__"]

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from saeseeds.matching.checkpoints import Dictionaries
    from saeseeds.stats.powerlaw import PowerLawComparison


def load_checkpoint(path: str, *, allow_zero_rows: bool = False) -> Dictionaries:
    """Returns the encoder and decoder rows ([n, d] float32), layout, folder read and firing frequencies (when
    the checkpoint carries them) of one SAE checkpoint: a folder, a file or an `hf://` reference, in any layout
    saeseeds reads. A folder it cannot read fails with a message naming the files found and the layouts known."""
    from saeseeds.matching.checkpoint_refs import resolve
    from saeseeds.matching.checkpoints import read_checkpoint

    return read_checkpoint(resolve(path).path, allow_zero_rows=allow_zero_rows)


def match(a: Any, b: Any, *, threshold: float = 0.7, definition: str = "paper", device: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Returns (matches table, metadata) of SAE `a` against SAE `b`: for every latent of a its partner in b under
    the exact maximum-total-cosine matching of encoder rows and of decoder rows, both cosines, and `shared`
    (the paper's rule at `threshold`). `a` and `b` are checkpoint paths or results of `load_checkpoint`. The
    metadata holds the shared fraction and, above 4096 latents, the optimality certificate; a matching that
    could not be certified raises `saeseeds.errors.UncertifiedMatching` rather than return."""
    from saeseeds.matching.match import match_dictionaries
    from saeseeds.matching.matches_file import certificate_problem
    from saeseeds.errors import UncertifiedMatching

    sa, sb = (x if hasattr(x, "enc") else load_checkpoint(x) for x in (a, b))
    table, meta = match_dictionaries(sa.enc, sa.dec, sb.enc, sb.dec, threshold=threshold, definition=definition, device=device)
    problem = certificate_problem(meta)
    if problem:
        raise UncertifiedMatching(problem)
    return table, meta


def stability_table(checkpoints: list[str], *, threshold: float = 0.7, definition: str = "paper",
                    device: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Returns (table, metadata): one row per latent of every checkpoint, by its original id, with how many of
    the other checkpoints share it and its partner and cosines in each (what `saeseeds stability` writes)."""
    from saeseeds.stats.stability import stability_of_checkpoints

    return stability_of_checkpoints(list(checkpoints), threshold=threshold, definition=definition, device=device)


def orphan_statistics(matches: dict[tuple[int, int], tuple[pd.DataFrame, dict]],
                      firing: dict[int, np.ndarray] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Returns (subsets, latents) from `match`'s (table, metadata) of every pair (a, b), a < b, of a set of seeds:
    per base seed and subset of the other seeds the fraction of the base's latents shared with none of them
    (only-in-base, the paper's Figure 2), and per latent how many other seeds share it, with its firing frequency
    when `firing` maps each seed to its per-latent frequencies (NaN otherwise). The threshold and definition are
    those each matching was made with (its metadata)."""
    import numpy as np

    from saeseeds.stats.orphans import latent_table, masks_from_matches, subset_table

    masks = {}
    for (a, b), (table, meta) in sorted(matches.items()):
        masks[(a, b)], masks[(b, a)] = masks_from_matches(table, meta["threshold"], meta["definition"], where=f"matches {a}-{b}",
                                                          n_b=meta.get("n_b", len(table)))
    sizes = {a: len(mask) for (a, _), mask in masks.items()}
    firing = firing if firing is not None else {s: np.full(n, np.nan) for s, n in sizes.items()}
    return subset_table(masks), latent_table(masks, firing)


def fit_power_laws(subsets: pd.DataFrame) -> PowerLawComparison:
    """Returns the plain (a N^-b) and offset (a N^-b + c) power-law fits of mean only-in-base against the number
    of seeds N, from `orphan_statistics`' subsets table, with their AIC (the paper's Figure 2 fits)."""
    from saeseeds.stats.powerlaw import fit_only_in_base

    return fit_only_in_base(subsets)
