"""External SAE sets: existing checkpoints brought into a study's results as seed folders.

`import_checkpoint` reads one checkpoint in any layout saeseeds knows (`saeseeds.matching.checkpoints`), from a
folder, a file or a pinned hub reference (`saeseeds.matching.checkpoint_refs`), and writes the seed folder
every later rule reads, so matching, chance, orphans, stability, summary and figures run exactly as
for trained seeds:

- `cfg.json` + `sae.safetensors` with the directions only (`encoder.weight`, `W_dec`, [n, d], in the
  checkpoint's own latent order, so every id in every table is the user's original id) and, in
  cfg.json, where they came from;
- `firing.npy`: the firing frequency on the site's held-out rows through the checkpoint's own encoder (sparsify,
  SAELens, dictionary_learning), else the one it carries (SAELens `sparsity.safetensors`), else NaN;
- `metrics.json`: the provenance (reference, layout, folder read, hub commit) and NaN for what only
  training or activations could tell (FVU, L0, dead fraction, tokens seen).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from saeseeds.common.atomic import atomic_write
from saeseeds.errors import CheckpointError
from saeseeds.matching.checkpoint_refs import resolve
from saeseeds.matching.checkpoints import Dictionaries, read_checkpoint
from saeseeds.matching.external_encoder import Encoder, firing_frequency, read_encoder

ARCH = "external"
"""The `arch` an external set's metrics (and the summary) report: its training recipe is not known."""

UNKNOWN_FIRING = "firing frequency unknown (Fig 3 leaves this set out)"


def import_checkpoint(reference: str, seed: int, *, cfg: str | Path, weights: str | Path, firing: str | Path,
                      metrics: str | Path, heldout: np.ndarray | None = None, no_rows: str | None = None,
                      cache_dir: str | Path | None = None) -> dict:
    """Returns the provenance after writing one external checkpoint as seed folder files (each atomically).

    Firing frequencies: on `heldout` (the site's held-out rows, as for trained seeds) through the checkpoint's own
    encoder (`saeseeds.matching.external_encoder`) when it can be read, else those the checkpoint carries (SAELens
    `sparsity.safetensors`), else NaN; metrics.json's `firing_source` says which, or why none (`no_rows`: why there
    are no rows, e.g. a set listed under no site).
    """
    resolved = resolve(reference, cache_dir=cache_dir)
    found = read_checkpoint(resolved.path)
    n, d = found.enc.shape
    provenance = {**resolved.provenance(), "layout": found.layout, "folder": str(found.folder)}
    freq, source = _firing(found, heldout, no_rows)
    atomic_write(weights, lambda tmp: save_file({"encoder.weight": found.enc, "W_dec": found.dec}, str(tmp)))
    atomic_write(firing, lambda tmp: np.save(open(tmp, "wb"), np.asarray(freq, dtype=np.float64)))
    atomic_write(cfg, lambda tmp: Path(tmp).write_text(json.dumps({"num_latents": n, "d_in": d, "external": provenance}, indent=2, sort_keys=True) + "\n"))
    record = {
        "seed": int(seed), "external": provenance, "sae": {"arch": ARCH, "num_latents": int(n)}, "d_in": int(d),
        "fvu": None, "l0": None, "dead_fraction": None, "tokens_seen": None,
        "firing_known": not np.isnan(freq).all(), "firing_source": source,
    }
    atomic_write(metrics, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n"))
    return record


def _firing(found: Dictionaries, heldout: np.ndarray | None, no_rows: str | None) -> tuple[np.ndarray, str]:
    """Returns (firing frequency per latent, where it came from or why it is unknown)."""
    n, d = found.enc.shape
    reason = no_rows or "no rows to encode"
    if heldout is not None:
        if heldout.shape[1] != d:
            raise CheckpointError(f"{found.folder}: d_in {d} differs from the site's activations ({heldout.shape[1]} wide)")
        encoder = read_encoder(found.folder, found.layout)
        if isinstance(encoder, Encoder):
            return firing_frequency(encoder, heldout), f"the site's {len(heldout)} held-out rows through the checkpoint's own encoder"
        reason = encoder
    if found.firing is not None:
        return found.firing, f"the checkpoint's own (SAELens sparsity.safetensors); not computed here: {reason}"
    return np.full(n, np.nan), f"{UNKNOWN_FIRING}: {reason}"

