"""Writing a saeseeds checkpoint in another library's layout, its latents optionally shuffled.

Used to check that an external analysis equals the in-workflow one after mapping ids back (README,
"Analyse SAEs you already have"), and by users who want their seeds in SAELens or dictionary_learning.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

from saeseeds.matching.checkpoints import read_checkpoint

EXPORT_LAYOUTS = ("SAELens", "dictionary_learning")


def export_checkpoint(src: str | Path, dst: str | Path, layout: str, shuffle_seed: int | None = None) -> np.ndarray:
    """Returns the permutation applied (latent i of `dst` is latent perm[i] of `src`) after writing `dst`.

    Only the directions (encoder and decoder rows) are exported, with zero biases: matching reads no
    bias. The permutation is written to `dst/perm.npy` too, so the ids can be mapped back.
    """
    if layout not in EXPORT_LAYOUTS:
        raise ValueError(f"layout={layout!r}: must be one of {EXPORT_LAYOUTS}")
    found = read_checkpoint(src)
    n, d = found.enc.shape
    perm = np.arange(n) if shuffle_seed is None else np.random.default_rng(shuffle_seed).permutation(n)
    enc, dec = found.enc[perm], found.dec[perm]
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    if layout == "SAELens":
        (dst / "cfg.json").write_text(json.dumps({"architecture": "topk", "d_in": d, "d_sae": n}))
        save_file({"W_enc": np.ascontiguousarray(enc.T), "W_dec": dec, "b_enc": np.zeros(n, np.float32),
                   "b_dec": np.zeros(d, np.float32)}, str(dst / "sae_weights.safetensors"))
    else:
        state = {"encoder.weight": torch.from_numpy(enc), "encoder.bias": torch.zeros(n),
                 "decoder.weight": torch.from_numpy(np.ascontiguousarray(dec.T)), "b_dec": torch.zeros(d)}
        torch.save(state, dst / "ae.pt")
        (dst / "config.json").write_text(json.dumps({"trainer": {"dict_class": "AutoEncoderTopK", "activation_dim": d, "dict_size": n}}, indent=4))
    np.save(dst / "perm.npy", perm)
    return perm
