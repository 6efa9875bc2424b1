"""Reading SAE dictionaries (encoder and decoder rows, one per latent, in the library's own latent order).

The layout is detected from the files in the folder:

- sparsify (EleutherAI, what `saeseeds` writes): `cfg.json` + `sae.safetensors` with `encoder.weight`
  [n, d] and `W_dec` [n, d]. A sparsify run over several hookpoints writes one such folder per
  hookpoint under the run folder; a run folder with exactly one is read, one with several names them.
- SAELens: `cfg.json` + `sae_weights.safetensors` with `W_enc` [d, n] (transposed) and `W_dec` [n, d];
  its optional `sparsity.safetensors` (`log_feature_sparsity`, log10) gives the firing frequency.
- dictionary_learning: `ae.pt` (a torch state dict, read only with `torch.load(weights_only=True)`:
  a pickle can run code, so anything but plain tensors is refused) + `config.json`; tensors
  `encoder.weight` [n, d] and `decoder.weight` [d, n] (AutoEncoder, AutoEncoderTopK, BatchTopKSAE, ...)
  or `W_enc` [d, n] and `W_dec` [n, d] (JumpReluAutoEncoder). Its trainers write `trainer_i/` folders.
- plain: one `.safetensors` or `.npz` file (the file itself, or a folder holding only it) with `W_enc`
  ([d, n] as SAELens, or [n, d]) and `W_dec` [n, d].

Row i of both returned matrices is latent i of the checkpoint, so a latent's id in every table is the
id the user's own library gives it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import safe_open
from saeseeds.errors import CheckpointError  # noqa: F401 (raised here; importable from here too)

SPARSIFY_FILE = "sae.safetensors"
SAELENS_FILE = "sae_weights.safetensors"
SAELENS_SPARSITY_FILE = "sparsity.safetensors"
DICTIONARY_LEARNING_FILE = "ae.pt"
DICTIONARY_LEARNING_CFG = "config.json"

LAYOUTS = {
    "sparsify": f"cfg.json + {SPARSIFY_FILE}",
    "SAELens": f"cfg.json + {SAELENS_FILE}",
    "dictionary_learning": f"{DICTIONARY_LEARNING_FILE} + {DICTIONARY_LEARNING_CFG}",
    "plain": "one .safetensors or .npz file holding W_enc and W_dec",
}
"""Every layout saeseeds reads, with the files that identify it (named in errors about unknown folders)."""


@dataclass
class Dictionaries:
    """The latent directions of one checkpoint, with where they came from."""

    enc: np.ndarray
    """[n, d] float32: encoder row of each latent."""
    dec: np.ndarray
    """[n, d] float32: decoder row of each latent."""
    layout: str
    """One of LAYOUTS."""
    folder: Path
    """The folder (or plain file) actually read: below the one given when a run folder held one checkpoint."""
    firing: np.ndarray | None = None
    """[n] firing frequency of each latent when the checkpoint carries it, else None."""


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


def _read_json(file: Path) -> dict:
    """Returns the JSON object in `file`, or raises naming the file."""
    try:
        cfg = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file}: not valid JSON ({e})") from e
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{file}: expected a JSON object, got {type(cfg).__name__}")
    return cfg


def _check_cfg(cfg_path: Path, cfg: dict, n: int, d: int) -> None:
    """Raises when a config states a dictionary size or input width the tensors contradict."""
    keys = (("num_latents", n), ("d_sae", n), ("dict_size", n), ("d_in", d), ("activation_dim", d))
    for key, actual in keys:
        stated = cfg.get(key)
        if isinstance(stated, int) and not isinstance(stated, bool) and stated != actual:
            raise CheckpointError(f"{cfg_path}: {key}={stated} but the tensors have {actual} ({'input width' if key in ('d_in', 'activation_dim') else 'latents'})")


def _found(path: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    return ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "") if names else "nothing"


def _own_layout(path: Path) -> str | None:
    """Returns the layout whose files sit directly in folder `path`, or None."""
    if (path / SPARSIFY_FILE).is_file() and (path / SAELENS_FILE).is_file():
        raise CheckpointError(f"{path}: holds both {SPARSIFY_FILE} and {SAELENS_FILE}; which one is meant is ambiguous")
    if (path / SPARSIFY_FILE).is_file():
        return "sparsify"
    if (path / SAELENS_FILE).is_file():
        return "SAELens"
    if (path / DICTIONARY_LEARNING_FILE).is_file():
        return "dictionary_learning"
    if not (path / "cfg.json").is_file() and len(_plain_files(path)) == 1:
        return "plain"
    return None


def _plain_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".safetensors", ".npz"))


def detect_layout(path: str | Path) -> tuple[str, Path]:
    """Returns (layout, folder or file to read) for a checkpoint path, or raises naming what it found.

    A folder without weights of its own but with exactly one checkpoint folder below it (a sparsify
    run over one hookpoint, a dictionary_learning run with one trainer) is that checkpoint; with
    several, the error names them, because which one is meant is the user's choice.
    """
    path = Path(path)
    if path.is_file() and path.suffix in (".safetensors", ".npz"):
        return "plain", path
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a checkpoint folder")
    layout = _own_layout(path)
    if layout:
        return layout, path
    inner = []
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        try:
            if _own_layout(sub):
                inner.append(sub)
        except CheckpointError:
            inner.append(sub)
    if len(inner) == 1:
        return detect_layout(inner[0])
    if len(inner) > 1:
        names = ", ".join(p.name for p in inner[:8]) + (" ..." if len(inner) > 8 else "")
        raise CheckpointError(
            f"{path}: holds {len(inner)} checkpoints in subfolders ({names}), e.g. one per hookpoint; "
            f"name the folder of one SAE, such as {inner[0]}"
        )
    raise CheckpointError(
        f"{path}: no known checkpoint layout: neither {SPARSIFY_FILE} (sparsify) nor {SAELENS_FILE} (SAELens) "
        f"nor {DICTIONARY_LEARNING_FILE} (dictionary_learning) nor one plain .safetensors/.npz with W_enc and W_dec; "
        f"found: {_found(path)}"
    )


def read_state_dict(file: Path) -> dict[str, np.ndarray]:
    """Returns the tensors of a torch state dict file, read without unpickling any object but tensors."""
    import torch

    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        # torch's message advises weights_only=False, which is exactly what must not be done here.
        kind = "not a weights-only torch file" if "Weights only load failed" in str(err) else "not a readable torch file"
        raise CheckpointError(
            f"{file}: {kind}: torch.load(weights_only=True) refused it ({type(err).__name__}); saeseeds never "
            "unpickles arbitrary objects: save the state dict (torch.save(ae.state_dict(), 'ae.pt'))"
        ) from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{file}: expected a state dict of tensors, got {type(state).__name__}")
    return {k: v.float().numpy() for k, v in state.items()}


def _dictionary_learning(folder: Path) -> tuple[np.ndarray, np.ndarray, str]:
    file = folder / DICTIONARY_LEARNING_FILE
    state = read_state_dict(file)
    if "encoder.weight" in state and "decoder.weight" in state:
        return state["encoder.weight"], np.ascontiguousarray(state["decoder.weight"].T), "encoder.weight"
    if "W_enc" in state and "W_dec" in state:
        return np.ascontiguousarray(state["W_enc"].T), state["W_dec"], "W_enc"
    raise CheckpointError(
        f"{file}: neither encoder.weight + decoder.weight nor W_enc + W_dec in the state dict (has {sorted(state)})"
    )


def _plain(file: Path) -> tuple[np.ndarray, np.ndarray]:
    if file.suffix == ".npz":
        try:
            with np.load(file, allow_pickle=False) as z:
                tensors = {k: z[k] for k in z.files if k in ("W_enc", "W_dec")}
                names = sorted(z.files)
        except Exception as err:
            raise CheckpointError(f"{file}: not a readable npz file without pickled objects ({type(err).__name__}: {err})") from err
        missing = [k for k in ("W_enc", "W_dec") if k not in tensors]
        if missing:
            raise CheckpointError(f"{file}: array {missing[0]!r} missing (has {names})")
        enc, dec = (np.asarray(tensors[k], dtype=np.float32) for k in ("W_enc", "W_dec"))
    else:
        enc, dec = _read_tensor(file, "W_enc"), _read_tensor(file, "W_dec")
    if dec.ndim == 2 and enc.shape == dec.shape[::-1]:
        # SAELens orientation [d, n]; a square dictionary (n == d) is read this way too, as SAELens writes it.
        enc = np.ascontiguousarray(enc.T)
    return enc, dec


def read_checkpoint(path: str | Path, *, allow_zero_rows: bool = False) -> Dictionaries:
    """Returns the encoder and decoder rows of the checkpoint at `path` in any known layout, checked.

    A row of zero norm has no direction to match, and in a checkpoint it usually means a broken
    export, so it is an error unless `allow_zero_rows` (then matching gives it cosine 0 with
    everything, see `saeseeds.matching.similarity.unit_rows`).
    """
    layout, folder = detect_layout(path)
    firing = None
    cfg_path = folder / "cfg.json"
    if layout in ("sparsify", "SAELens"):
        if not cfg_path.is_file():
            raise CheckpointError(f"{folder}: cfg.json missing")
        cfg = _read_json(cfg_path)
    if layout == "sparsify":
        file, enc_name = folder / SPARSIFY_FILE, "encoder.weight"
        enc = _read_tensor(file, enc_name)
        dec = _read_tensor(file, "W_dec")
    elif layout == "SAELens":
        file, enc_name = folder / SAELENS_FILE, "W_enc"
        enc = _read_tensor(file, "W_enc")
        if enc.ndim != 2:
            raise CheckpointError(f"{file}: tensor 'W_enc' has shape {enc.shape}, expected 2-D [d, n]")
        enc = np.ascontiguousarray(enc.T)
        dec = _read_tensor(file, "W_dec")
        if (folder / SAELENS_SPARSITY_FILE).is_file():
            firing = 10.0 ** _read_tensor(folder / SAELENS_SPARSITY_FILE, "log_feature_sparsity").astype(np.float64)
    elif layout == "dictionary_learning":
        file = folder / DICTIONARY_LEARNING_FILE
        enc, dec, enc_name = _dictionary_learning(folder)
        cfg_path = folder / DICTIONARY_LEARNING_CFG
        cfg = _read_json(cfg_path).get("trainer", {}) if cfg_path.is_file() else {}
    else:
        file, enc_name, cfg = folder if folder.is_file() else _plain_files(folder)[0], "W_enc", {}
        enc, dec = _plain(file)
    dec_name = "decoder.weight" if enc_name == "encoder.weight" and layout == "dictionary_learning" else "W_dec"
    if enc.ndim != 2 or dec.ndim != 2 or enc.shape != dec.shape:
        raise CheckpointError(
            f"{file}: encoder {enc_name!r} gives [n, d] = {list(enc.shape)} but {dec_name!r} has shape "
            f"{list(dec.shape)}{' (transposed)' if dec_name == 'decoder.weight' else ''}"
        )
    if enc.shape[0] == 0 or enc.shape[1] == 0:
        raise CheckpointError(f"{file}: empty dictionary of shape {list(enc.shape)}")
    for name, w in ((enc_name, enc), (dec_name, dec)):
        if not np.isfinite(w).all():
            bad = np.argwhere(~np.isfinite(w))[0].tolist()
            raise CheckpointError(f"{file}: tensor {name!r} has non-finite values (first at row/col {bad})")
        zero = np.flatnonzero(~(np.abs(w).max(axis=1) > 0))
        if len(zero) and not allow_zero_rows:
            raise CheckpointError(
                f"{file}: tensor {name!r} has {len(zero)} zero-norm rows (latents {zero[:5].tolist()}"
                f"{' ...' if len(zero) > 5 else ''}); a latent without a direction cannot be matched"
            )
    if cfg:
        _check_cfg(cfg_path, cfg, *enc.shape)
    if firing is not None and firing.shape != (enc.shape[0],):
        raise CheckpointError(f"{folder / SAELENS_SPARSITY_FILE}: {firing.shape[0]} values for {enc.shape[0]} latents")
    return Dictionaries(enc=np.ascontiguousarray(enc, dtype=np.float32), dec=np.ascontiguousarray(dec, dtype=np.float32),
                        layout=layout, folder=folder, firing=firing)


def load_dictionaries(path: str | Path, *, allow_zero_rows: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Returns (W_enc, W_dec), both float32 [n, d] with one row per latent, from a checkpoint in any known layout."""
    found = read_checkpoint(path, allow_zero_rows=allow_zero_rows)
    return found.enc, found.dec
