"""Loss recovered (SAEBench's core metric): what the model's next-token loss keeps when an SAE's reconstruction
replaces the activations at the hook.

For each SAE, on held-out contexts: the model's cross-entropy with the reconstruction spliced in (CE_sae), and
its KL divergence from the clean model's next-token distribution, against the clean model (CE_clean) and
zero-ablation of the hook (CE_zero). loss recovered = (CE_zero - CE_sae) / (CE_zero - CE_clean): 1 when the
SAE costs the model nothing, 0 when it is as bad as deleting the hook's output.
"""

from __future__ import annotations

import logging
from typing import Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from saeseeds.sae.coder import SparseCoder
from saeseeds.functional.splice import Splice, SplicedModel
from saeseeds.activations.store import StoreRows

LOSS_COLUMNS = ["sae", "seed", "ce_clean", "ce_zero", "ce_sae", "kl_zero", "kl_sae", "loss_recovered", "contexts", "tokens"]


def heldout_token_ids(store: StoreRows, n_contexts: int) -> np.ndarray:
    """Returns the token ids [n_contexts, L] of the first `n_contexts` held-out contexts of a store: the text
    behind the held-out rows, which no SAE was trained on."""
    ids = store.token_ids()
    length = ids.shape[1]
    first = store.n_train // length
    available = ids.shape[0] - first
    if not 1 <= n_contexts <= available:
        raise ValueError(f"functional.contexts={n_contexts}: the store {getattr(store, 'path', '')} holds {available} held-out contexts")
    return ids[first : first + n_contexts]


def sae_splice(sae: SparseCoder) -> Splice:
    """Returns the splice that replaces the hook's output by `sae`'s reconstruction of it, row by row."""

    def reconstruct(x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]).to(sae.device, sae.dtype)
        acts, indices = sae.encode(rows)
        return sae.decode(acts, indices).reshape(x.shape).to(x.device)

    return reconstruct


def zero_splice(x: torch.Tensor) -> torch.Tensor:
    """Returns zeros: zero-ablation of the hook."""
    return torch.zeros_like(x)


def keeping_first_position(fn: Splice) -> Splice:
    """Returns `fn` with the first position of every context left as the model computed it.

    The first token is the attention sink: in SmolLM2 the layer-2 MLP output there has ~17x the norm of other
    positions (store attrs mean_norm_first_position), an SAE cannot reconstruct it, and every later position attends
    to it, so one bad row there can dominate the loss. SAEBench likewise leaves the BOS position alone.
    """

    def kept(x: torch.Tensor) -> torch.Tensor:
        out = fn(x).clone()
        out[:, 0] = x[:, 0]
        return out

    return kept


class _Sums:
    """Running sums of next-token cross-entropy and KL to the clean model over tokens, in float64."""

    def __init__(self):
        self.ce = self.kl = 0.0
        self.ce_tokens = self.kl_tokens = 0

    def add(self, logits: torch.Tensor, input_ids: torch.Tensor, clean_logp: torch.Tensor | None) -> None:
        logp = F.log_softmax(logits.double(), dim=-1)
        targets = input_ids[:, 1:].to(logp.device)
        self.ce -= logp[:, :-1].gather(-1, targets[..., None]).sum().item()
        self.ce_tokens += targets.numel()
        if clean_logp is not None:
            # KL(clean || spliced) at every position: how far the spliced model's next-token distribution moved
            self.kl += (clean_logp.exp() * (clean_logp - logp)).sum().item()
            self.kl_tokens += logp.shape[0] * logp.shape[1]

    @property
    def mean_ce(self) -> float:
        return self.ce / self.ce_tokens

    @property
    def mean_kl(self) -> float:
        return self.kl / self.kl_tokens if self.kl_tokens else 0.0


def loss_recovered(
    model: torch.nn.Module, hook: str, input_ids: np.ndarray | torch.Tensor, splices: Mapping[tuple[str, int], Splice], *,
    batch_size: int = 4, keep_first_position: bool = False, log: logging.Logger | None = None,
) -> pd.DataFrame:
    """Returns one row per splice, keyed by (sae, seed): `LOSS_COLUMNS`, cross-entropies in nats per predicted
    token, KL in nats per position. `keep_first_position`: every splice, zero-ablation included, leaves the
    first position of each context as the model computed it (`keeping_first_position`).

    Per batch the model runs once clean (which also records the state entering the hook's block), once with
    the hook zeroed, and once per splice through the blocks from the hook's on only: for layer 6 of 30 the
    23 later blocks and the unembedding, the clean and zero runs shared by every SAE of the site.
    """
    log = log or logging.getLogger("saeseeds.functional.loss")
    spliced = SplicedModel(model, hook)
    ids = torch.as_tensor(np.asarray(input_ids), dtype=torch.long)
    if keep_first_position:
        splices = {key: keeping_first_position(fn) for key, fn in splices.items()}
    zero_fn = keeping_first_position(zero_splice) if keep_first_position else zero_splice
    log.info("loss recovered at %s: %d splices on %d contexts of %d tokens, %d per batch", hook, len(splices), len(ids), ids.shape[1], batch_size)
    clean, zero = _Sums(), _Sums()
    sums = {key: _Sums() for key in splices}
    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size]
        logits, prefix = spliced.clean(batch)
        clean_logp = F.log_softmax(logits.double(), dim=-1)
        clean.add(logits, batch, None)
        zero.add(spliced.tail(prefix, zero_fn), batch, clean_logp)
        for key, fn in splices.items():
            sums[key].add(spliced.tail(prefix, fn), batch, clean_logp)
        log.info("loss recovered: %d of %d contexts, %d splices", min(start + batch_size, len(ids)), len(ids), len(splices))
    rows = []
    for key, s in sums.items():
        rows.append({
            "sae": key[0], "seed": key[1], "ce_clean": clean.mean_ce, "ce_zero": zero.mean_ce, "ce_sae": s.mean_ce,
            "kl_zero": zero.mean_kl, "kl_sae": s.mean_kl,
            "loss_recovered": (zero.mean_ce - s.mean_ce) / (zero.mean_ce - clean.mean_ce),
            "contexts": len(ids), "tokens": clean.ce_tokens,
        })
    return pd.DataFrame(rows, columns=LOSS_COLUMNS).astype({"seed": "int64"})

