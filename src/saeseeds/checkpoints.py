"""Reading SAE dictionaries (encoder and decoder rows) from sparsify and SAELens checkpoints.

Both layouts are a folder with `cfg.json` plus one safetensors file:

- sparsify (EleutherAI, what `saeseeds` writes): `sae.safetensors` with `encoder.weight` [n, d]
  and `W_dec` [n, d];
- SAELens: `sae_weights.safetensors` with `W_enc` [d, n] (transposed) and `W_dec` [n, d].
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import safe_open

SPARSIFY_FILE = "sae.safetensors"
SAELENS_FILE = "sae_weights.safetensors"


class CheckpointError(ValueError):
    """A checkpoint folder that is missing a file or tensor, or holds inconsistent tensors."""


# Tensor names that give a file's layout away when it sits under the other layout's file name.
_LAYOUT_OF = {"encoder.weight": ("sparsify", SPARSIFY_FILE), "W_enc": ("SAELens", SAELENS_FILE)}


def _read_tensor(file: Path, name: str) -> np.ndarray:
    """Returns tensor `name` of safetensors `file` as float32 numpy, or raises naming both."""
    try:
        with safe_open(str(file), framework="pt") as f:
            names = sorted(f.keys())
            # Through torch, because numpy cannot hold bfloat16 checkpoints.
            tensor = f.get_tensor(name).float().numpy() if name in names else None
    except Exception as err:  # safetensors raises its own error type for truncated or foreign files
        raise CheckpointError(f"{file}: not a readable safetensors file ({err})") from err
    if tensor is None:
        for other, (layout, expected) in _LAYOUT_OF.items():
            if other in names and other != name:
                raise CheckpointError(
                    f"{file}: holds {layout} tensors ({other!r}) under the file name {file.name}; "
                    f"a {layout} checkpoint is named {expected}"
                )
        raise CheckpointError(f"{file}: tensor {name!r} missing (has {names})")
    return tensor


def _check_cfg(cfg_path: Path, cfg: dict, n: int, d: int) -> None:
    """Raises when cfg.json states a dictionary size or input width the tensors contradict."""
    for key, actual in (("num_latents", n), ("d_sae", n), ("d_in", d)):
        stated = cfg.get(key)
        if isinstance(stated, int) and not isinstance(stated, bool) and stated != actual:
            raise CheckpointError(f"{cfg_path}: {key}={stated} but the tensors have {actual} ({'latents' if key != 'd_in' else 'input width'})")


def load_dictionaries(path: str | Path, *, allow_zero_rows: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Returns (W_enc, W_dec), both float32 [n, d] with one row per latent, from a checkpoint folder.

    A row of zero norm has no direction to match, and in a checkpoint it usually means a broken
    export, so it is an error unless `allow_zero_rows` (then matching gives it cosine 0 with
    everything, see `saeseeds.similarity.unit_rows`).
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a checkpoint folder")
    if not (path / "cfg.json").is_file():
        raise CheckpointError(f"{path}: cfg.json missing")
    try:
        cfg = json.loads((path / "cfg.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path / 'cfg.json'}: not valid JSON ({e})") from e
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path / 'cfg.json'}: expected a JSON object, got {type(cfg).__name__}")
    sparsify, saelens = path / SPARSIFY_FILE, path / SAELENS_FILE
    if sparsify.is_file() and saelens.is_file():
        raise CheckpointError(f"{path}: holds both {SPARSIFY_FILE} and {SAELENS_FILE}; which one is meant is ambiguous")
    if sparsify.is_file():
        file, enc = sparsify, _read_tensor(sparsify, "encoder.weight")
        enc_name = "encoder.weight"
    elif saelens.is_file():
        file, enc_name = saelens, "W_enc"
        enc = _read_tensor(saelens, "W_enc")
        if enc.ndim != 2:
            raise CheckpointError(f"{file}: tensor 'W_enc' has shape {enc.shape}, expected 2-D [d, n]")
        enc = np.ascontiguousarray(enc.T)
    else:
        raise CheckpointError(f"{path}: neither {SPARSIFY_FILE} (sparsify) nor {SAELENS_FILE} (SAELens) found")
    dec = _read_tensor(file, "W_dec")
    if enc.ndim != 2 or dec.ndim != 2 or enc.shape != dec.shape:
        raise CheckpointError(
            f"{file}: encoder {enc_name!r} gives [n, d] = {list(enc.shape)} but 'W_dec' has shape {list(dec.shape)}"
        )
    if enc.shape[0] == 0 or enc.shape[1] == 0:
        raise CheckpointError(f"{file}: empty dictionary of shape {list(enc.shape)}")
    for name, w in ((enc_name, enc), ("W_dec", dec)):
        if not np.isfinite(w).all():
            bad = np.argwhere(~np.isfinite(w))[0].tolist()
            raise CheckpointError(f"{file}: tensor {name!r} has non-finite values (first at row/col {bad})")
        zero = np.flatnonzero(~(np.abs(w).max(axis=1) > 0))
        if len(zero) and not allow_zero_rows:
            raise CheckpointError(
                f"{file}: tensor {name!r} has {len(zero)} zero-norm rows (latents {zero[:5].tolist()}"
                f"{' ...' if len(zero) > 5 else ''}); a latent without a direction cannot be matched"
            )
    _check_cfg(path / "cfg.json", cfg, *enc.shape)
    return enc, dec
