"""An external checkpoint's own encoder, read back from its files, to say which latents fire on a site's rows.

An external set is matched by its directions alone (`saeseeds.matching.checkpoints`), but its firing
frequencies (Fig 3, the stability table's `firing_frequency`) need each library's forward pass: its biases, its
activation function and that function's k or thresholds. A latent fires on a row where its activation is
above 0, as for trained sets (`saeseeds.sae.train.evaluate`). Each layout's encoder, as its library computes it:

- sparsify `SparseCoder.encode`: relu((x - b_dec) W_enc^T + b_enc), the top k (cfg.json `k`; activation `topk`).
- SAELens: x' = x - b_dec when `apply_b_dec_to_input` (its default), pre = x' W_enc + b_enc; `architecture`
  standard: relu(pre); topk: the k largest of pre, relu'd; jumprelu: relu(pre) where pre > threshold.
- dictionary_learning: `AutoEncoder` relu(encoder(x - bias)); `AutoEncoderTopK` relu(encoder(x - b_dec)), top k;
  `BatchTopKSAE` relu(encoder(x - b_dec)) where above its threshold (its inference mode);
  `JumpReluAutoEncoder` relu(pre) where pre = x W_enc + b_enc > threshold (it does not subtract b_dec).

Anything else gives a one-line reason instead of an encoder, which the import log records: plain files hold no
biases, gated SAEs need their gate's parameters, SAELens' activation normalisation needs a scale its files do not
hold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from saeseeds.matching.checkpoints import DICTIONARY_LEARNING_CFG, DICTIONARY_LEARNING_FILE, SAELENS_FILE, SPARSIFY_FILE


@dataclass
class Encoder:
    """What decides which latents of an external checkpoint fire on a row."""

    weight: np.ndarray
    """[n, d] float32 encoder rows."""
    bias: np.ndarray
    """[n] float32 encoder bias."""
    input_bias: np.ndarray | None
    """[d] subtracted from each row before encoding, or None."""
    rule: str
    """'relu' (pre > 0), 'topk' (among the k largest pre, and > 0) or 'threshold' (pre > threshold, and > 0)."""
    k: int | None = None
    threshold: np.ndarray | None = None
    """[n] or scalar, for rule 'threshold'."""

    def active(self, x: np.ndarray) -> np.ndarray:
        """Returns [rows, n] booleans: which latents fire on each row of x ([rows, d])."""
        x = np.asarray(x, dtype=np.float32)
        if self.input_bias is not None:
            x = x - self.input_bias
        pre = x @ self.weight.T + self.bias
        if self.rule == "relu":
            return pre > 0
        if self.rule == "threshold":
            return (pre > self.threshold) & (pre > 0)
        top = np.argpartition(-pre, self.k - 1, axis=1)[:, : self.k]
        mask = np.zeros(pre.shape, dtype=bool)
        rows = np.arange(len(pre))[:, None]
        mask[rows, top] = pre[rows, top] > 0
        return mask


def firing_frequency(encoder: Encoder, rows: np.ndarray, *, batch_rows: int = 2048) -> np.ndarray:
    """Returns [n] float64: the fraction of `rows` on which each latent fires."""
    counts = np.zeros(encoder.weight.shape[0], dtype=np.int64)
    for start in range(0, len(rows), batch_rows):
        counts += encoder.active(rows[start : start + batch_rows]).sum(axis=0)
    return counts / max(1, len(rows))


def read_encoder(folder: str | Path, layout: str) -> Encoder | str:
    """Returns the encoder of the checkpoint in `folder` (as `read_checkpoint` found it), or why there is none."""
    folder = Path(folder)
    if layout == "sparsify":
        return _sparsify(folder)
    if layout == "SAELens":
        return _saelens(folder)
    if layout == "dictionary_learning":
        return _dictionary_learning(folder)
    return f"a {layout} checkpoint holds directions only (no biases or activation function to encode rows with)"


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


def _sparsify(folder: Path) -> Encoder | str:
    cfg = _json(folder / "cfg.json")
    if cfg.get("activation", "topk") != "topk" or cfg.get("transcode"):
        return f"sparsify activation {cfg.get('activation')!r}{' (a transcoder)' if cfg.get('transcode') else ''} is not read (only topk SAEs)"
    if not isinstance(cfg.get("k"), int):
        return "sparsify cfg.json has no integer k"
    t = load_file(str(folder / SPARSIFY_FILE))
    if "encoder.bias" not in t or "b_dec" not in t:
        return f"{SPARSIFY_FILE} lacks encoder.bias or b_dec (has {sorted(t)})"
    return Encoder(_f32(t["encoder.weight"]), _f32(t["encoder.bias"]), _f32(t["b_dec"]), "topk", k=cfg["k"])


def _saelens(folder: Path) -> Encoder | str:
    cfg = _json(folder / "cfg.json")
    arch = cfg.get("architecture", "standard")
    if cfg.get("normalize_activations") not in (None, "none"):
        return f"SAELens normalize_activations={cfg['normalize_activations']!r}: the scale it applies is not in the files"
    t = load_file(str(folder / SAELENS_FILE))
    if "b_enc" not in t or "b_dec" not in t:
        return f"{SAELENS_FILE} lacks b_enc or b_dec (has {sorted(t)})"
    weight, bias = _f32(t["W_enc"].T), _f32(t["b_enc"])
    input_bias = _f32(t["b_dec"]) if cfg.get("apply_b_dec_to_input", True) else None
    if arch == "standard":
        return Encoder(weight, bias, input_bias, "relu")
    if arch == "topk" and isinstance(cfg.get("k"), int):
        return Encoder(weight, bias, input_bias, "topk", k=cfg["k"])
    if arch == "jumprelu" and "threshold" in t:
        return Encoder(weight, bias, input_bias, "threshold", threshold=_f32(t["threshold"]))
    return f"SAELens architecture {arch!r} is not read (standard, topk with k, jumprelu with threshold are)"


def _dictionary_learning(folder: Path) -> Encoder | str:
    from saeseeds.matching.checkpoints import read_state_dict  # weights-only torch.load, refusal messages included

    cls = _json(folder / DICTIONARY_LEARNING_CFG).get("trainer", {}).get("dict_class")
    t = read_state_dict(folder / DICTIONARY_LEARNING_FILE)
    if cls == "AutoEncoder" and {"encoder.bias", "bias"} <= set(t):
        return Encoder(_f32(t["encoder.weight"]), _f32(t["encoder.bias"]), _f32(t["bias"]), "relu")
    if cls in ("AutoEncoderTopK", "BatchTopKSAE") and {"encoder.bias", "b_dec", "k"} <= set(t):
        weight, bias, input_bias = _f32(t["encoder.weight"]), _f32(t["encoder.bias"]), _f32(t["b_dec"])
        if cls == "AutoEncoderTopK":
            return Encoder(weight, bias, input_bias, "topk", k=int(t["k"]))
        return Encoder(weight, bias, input_bias, "threshold", threshold=_f32(t["threshold"]))
    if cls == "JumpReluAutoEncoder" and {"W_enc", "b_enc", "threshold"} <= set(t):
        return Encoder(_f32(t["W_enc"].T), _f32(t["b_enc"]), None, "threshold", threshold=_f32(t["threshold"]))
    return f"dictionary_learning dict_class {cls!r} is not read (AutoEncoder, AutoEncoderTopK, BatchTopKSAE, JumpReluAutoEncoder are)"
