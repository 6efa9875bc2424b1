"""The substitution test through the model, on a sample of latents: the swap of saeseeds.functional.substitution spliced in at
the hook, measured by the model's output instead of the reconstruction error.

For latent i of seed a and a candidate c of seed b (the partner and the two controls, with the scales fitted in
the activation-space test), the hook's output is replaced by seed a's reconstruction (a) as it is, (b) without i,
and (c) with i's contribution swapped for the candidate's. On held-out contexts where i fires most, the KL of the
model's next-token distribution from the clean model's, per position:

    score = 1 - (KL_swap - KL_sae) / (KL_drop - KL_sae)

1: swapping in the candidate costs the model nothing beyond the SAE's own error; 0: as much as deleting i.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from saeseeds.autointerp.examples import select_latents
from saeseeds.sae.coder import SparseCoder
from saeseeds.functional.splice import Splice, SplicedModel
from saeseeds.activations.store import StoreRows
from saeseeds.functional.substitution import RowRange, dense_acts

CANDIDATES = ("partner", "random", "nonpartner")
MODEL_COLUMNS = ["latent", "dec_cos", "shared", "contexts", "kl_sae", "kl_drop"] + [
    f"{kind}_{name}" for name in CANDIDATES for kind in ("kl", "score")
]


def sample_latents(substitution: pd.DataFrame, n_latents: int | None, *, seed: int = 0) -> pd.DataFrame:
    """Returns the rows of a substitution table (one per latent of seed a) to test through the model: a sample of
    the latents that fire on held-out rows, stratified by matched decoder cosine as autointerp samples them (one
    from each of `n_latents` equal-count cosine bins; saeseeds.autointerp.examples.select_latents); None takes all."""
    table = substitution.sort_values("latent").reset_index(drop=True)
    matches = table.rename(columns={"partner": "dec_partner"})
    firing = np.zeros(int(table["latent"].max()) + 1)
    firing[table["latent"].to_numpy()] = table["firing_rows"].to_numpy()
    chosen = select_latents(matches, firing, seeds=(0, 1), n_latents=n_latents, rng_seed=seed)
    latents = chosen.loc[chosen["seed"] == 0, "latent"].to_numpy()
    return table[table["latent"].isin(latents)].reset_index(drop=True)


def swap_splice(sae_a: SparseCoder, sae_b: SparseCoder, latent: int | None, candidate: int | None, scale: float) -> Splice:
    """Returns the splice of seed a's reconstruction with `latent`'s contribution replaced by `scale` times seed b's
    `candidate` contribution (candidate None: dropped; latent None: the reconstruction as it is). All three decode
    densely the same way, so they differ only by the swap."""

    def swap(x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]).to(sae_a.device, sae_a.dtype)
        a = dense_acts(sae_a, rows)
        out = a @ sae_a.W_dec + sae_a.b_dec
        if latent is None:
            return out.reshape(x.shape).to(x.device)
        out = out - a[:, latent : latent + 1] * sae_a.W_dec[latent]
        if candidate is not None:
            b = dense_acts(sae_b, rows)[:, candidate : candidate + 1]
            out = out + scale * b * sae_b.W_dec[candidate]
        return out.reshape(x.shape).to(x.device)

    return swap


def firing_contexts(sae: SparseCoder, store: StoreRows, latents: np.ndarray, n_contexts: int, *, batch_rows: int = 8192) -> dict[int, np.ndarray]:
    """Returns, per latent, the indices (into the held-out contexts) of the `n_contexts` contexts where its summed
    activation on the held-out rows is largest (fewer if it fires in fewer)."""
    length = store.token_ids().shape[1]
    heldout = RowRange(store.array, store.n_train, store.n_train + store.n_heldout)
    n_ctx = len(heldout) // length
    sums = np.zeros((n_ctx, len(latents)))
    idx = torch.tensor(np.array(latents), dtype=torch.long, device=sae.device)
    for start in range(0, n_ctx * length, batch_rows):
        rows = torch.from_numpy(heldout[start : start + batch_rows])
        acts = dense_acts(sae, rows)[:, idx].double().cpu().numpy()
        ctx = (start + np.arange(len(rows))) // length
        np.add.at(sums, ctx, acts)
    out = {}
    for k, latent in enumerate(latents):
        order = np.argsort(-sums[:, k], kind="stable")
        out[int(latent)] = np.sort(order[: n_contexts][sums[order[:n_contexts], k] > 0])
    return out


def _mean_kl(logits: torch.Tensor, clean_logp: torch.Tensor) -> float:
    logp = F.log_softmax(logits.double(), dim=-1)
    return float((clean_logp.exp() * (clean_logp - logp)).sum(-1).mean())


def model_substitution(
    model: torch.nn.Module, hook: str, store: StoreRows, sae_a: SparseCoder, sae_b: SparseCoder, sample: pd.DataFrame, *,
    contexts_per_latent: int = 1, log: logging.Logger | None = None,
) -> pd.DataFrame:
    """Returns one row per sampled latent (`MODEL_COLUMNS`): KL to the clean model, per position of the held-out
    contexts where it fires most, with seed a's SAE spliced in as it is, without the latent, and with it swapped
    for each candidate of its substitution row (partner, random, best non-partner, at their fitted scales), and the
    candidates' scores."""
    log = log or logging.getLogger("saeseeds.functional.model_substitution")
    spliced = SplicedModel(model, hook)
    ids = store.token_ids()
    first = store.n_train // ids.shape[1]
    where = firing_contexts(sae_a, store, sample["latent"].to_numpy(), contexts_per_latent)
    rows = []
    for _, row in sample.iterrows():
        i = int(row["latent"])
        chosen = where[i]
        out = {"latent": i, "dec_cos": float(row["dec_cos"]), "shared": bool(row["shared"]), "contexts": len(chosen)}
        if not len(chosen):
            rows.append(out)
            continue
        logits, prefix = spliced.clean(torch.as_tensor(ids[first + chosen], dtype=torch.long))
        clean_logp = F.log_softmax(logits.double(), dim=-1)
        out["kl_sae"] = kl_sae = _mean_kl(spliced.tail(prefix, swap_splice(sae_a, sae_b, None, None, 0.0)), clean_logp)
        out["kl_drop"] = kl_drop = _mean_kl(spliced.tail(prefix, swap_splice(sae_a, sae_b, i, None, 0.0)), clean_logp)
        for name in CANDIDATES:
            c, s = int(row[name]), float(row[f"scale_{name}"])
            kl = _mean_kl(spliced.tail(prefix, swap_splice(sae_a, sae_b, i, c, s)), clean_logp)
            out[f"kl_{name}"] = kl
            out[f"score_{name}"] = 1 - (kl - kl_sae) / (kl_drop - kl_sae) if kl_drop != kl_sae else float("nan")
        log.info("latent %d (dec cos %.3f): KL sae %.4g, drop %.4g, partner %.4g, random %.4g, non-partner %.4g", i, out["dec_cos"],
                 kl_sae, kl_drop, out["kl_partner"], out["kl_random"], out["kl_nonpartner"])
        rows.append(out)
    return pd.DataFrame(rows, columns=MODEL_COLUMNS)

