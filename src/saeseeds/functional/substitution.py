"""The substitution test in activation space: can a latent's partner in another seed do its job in the reconstruction?

For latent i of seed A (decoder row d_i, activation a_i) and a candidate j of seed B (g_j, b_j), A's
reconstruction with i's contribution a_i d_i replaced by s b_j g_j; s is fitted on training rows by least
squares of the two contributions (s = sum a b d.g / sum b^2 |g|^2, exactly 1 for an identical latent). What
the swap does to the held-out reconstruction error is compared with dropping i altogether:

    score = 1 - delta_candidate / delta_ablate

1 when the candidate reconstructs as well as i itself, 0 when it is worth no more than deleting i, negative
when it is worse than nothing. Deltas are changes in held-out FVU (squared error over the total variance).
Only rows where i or the candidate fires change, so the sums run over those rows.

Candidates: the partner from the decoder matching (the exact bijection of saeseeds.matching.match), and two controls: a
random latent of B and the best non-partner (the B latent with the highest decoder cosine to d_i other than
the partner), the hard negative.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from saeseeds.matching.alternatives import MAX_LATENTS, partners
from saeseeds.sae.coder import SparseCoder

SUBSTITUTION_COLUMNS = [
    "latent", "partner", "enc_cos", "dec_cos", "shared", "firing_rows", "rows_partner", "scale_partner", "delta_ablate",
    "delta_partner", "score_partner", "random", "scale_random", "delta_random", "score_random", "nonpartner", "nonpartner_cos",
    "scale_nonpartner", "delta_nonpartner", "score_nonpartner", "greedy", "score_greedy", "maxcos", "score_maxcos", "sinkhorn",
    "score_sinkhorn",
]
MATCHING_METHODS = ("greedy", "maxcos", "sinkhorn")
"""The other matchings of `saeseeds.matching.alternatives`, whose decoder partners get a substitution score too (how good is each
method's partner at doing the latent's job); -1 and NaN where they do not apply (sizes differ, or more latents than
`matchings.MAX_LATENTS`)."""


@torch.no_grad()
def dense_acts(sae: SparseCoder, x: torch.Tensor) -> torch.Tensor:
    """Returns every latent's activation [N, n] on rows `x` (zeros where a TopK latent is not selected)."""
    acts, indices = sae.encode(x.to(sae.device, sae.dtype))
    if indices is None:
        return acts
    return torch.zeros(len(x), sae.num_latents, dtype=acts.dtype, device=acts.device).scatter_(1, indices, acts)


class RowRange:
    """Rows [start, stop) of a store's array (zarr or on the fly), read a batch at a time: a store's held-out rows
    at the paper's scale (2M x 768 float32, 6 GB) need not fit in memory."""

    def __init__(self, array, start: int, stop: int):
        self.array, self.start, self.stop = array, int(start), int(stop)

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, key: slice) -> np.ndarray:
        lo, hi, _ = key.indices(len(self))
        return np.asarray(self.array[self.start + lo : self.start + hi], dtype=np.float32)


def _batched(rows, batch_rows: int):
    """Yields float32 tensors of `batch_rows` consecutive rows of an array or RowRange."""
    for start in range(0, len(rows), batch_rows):
        yield torch.from_numpy(np.ascontiguousarray(rows[start : start + batch_rows], dtype=np.float32))


@torch.no_grad()
def fit_scales(sae_a: SparseCoder, sae_b: SparseCoder, train_rows: np.ndarray | RowRange, candidates: np.ndarray, *, batch_rows: int = 4096) -> np.ndarray:
    """Returns, per latent i of A, the least-squares scale s_i of candidate c_i's contribution to match i's on
    `train_rows`: argmin_s sum ||a_i d_i - s b_c g_c||^2 (0 when the candidate never fires there)."""
    dev = sae_a.device
    c = torch.tensor(np.array(candidates), dtype=torch.long, device=dev)
    dots = (sae_a.W_dec * sae_b.W_dec[c]).sum(1).double()
    g2 = sae_b.W_dec[c].pow(2).sum(1).double()
    ab = torch.zeros(len(c), dtype=torch.float64, device=dev)
    bb = torch.zeros(len(c), dtype=torch.float64, device=dev)
    for x in _batched(train_rows, batch_rows):
        x = x.to(dev)
        a, b = dense_acts(sae_a, x), dense_acts(sae_b, x)[:, c]
        ab += (a * b).sum(0, dtype=torch.float64)
        bb += b.pow(2).sum(0, dtype=torch.float64)
    den = bb * g2
    return torch.where(den > 0, ab * dots / den.clamp_min(1e-300), torch.zeros_like(den)).cpu().numpy()


@torch.no_grad()
def substitution_deltas(
    sae_a: SparseCoder, sae_b: SparseCoder, heldout: np.ndarray | RowRange, candidates: dict[str, np.ndarray], scales: dict[str, np.ndarray],
    *, batch_rows: int = 4096,
) -> dict[str, np.ndarray]:
    """Returns per latent of A the change in held-out FVU when it is dropped (`ablate`) and when it is replaced
    by each named candidate (scaled), plus `firing_rows` (rows where i fires) and `rows_<name>` (i or the candidate).

    With e = x - x_hat_A, u = a_i d_i and v = s b_c g_c, the swap's change in squared error on a row is
    ||e + u - v||^2 - ||e||^2 = 2 e.u + |u|^2 - 2 e.v - 2 u.v + |v|^2, computed for all latents at once from
    e.D_A^T and e.D_B^T.
    """
    d_a, d_b = sae_a.W_dec.double(), sae_b.W_dec.double()
    norm_a = d_a.pow(2).sum(1)
    dev = sae_a.device
    idx = {name: torch.tensor(np.array(c), dtype=torch.long, device=dev) for name, c in candidates.items()}
    s = {name: torch.tensor(np.array(scales[name]), dtype=torch.float64, device=dev) for name in candidates}
    dots = {name: (d_a * d_b[c]).sum(1) for name, c in idx.items()}
    norm_g = {name: d_b[c].pow(2).sum(1) for name, c in idx.items()}
    n = sae_a.num_latents
    ablate = torch.zeros(n, dtype=torch.float64, device=dev)
    firing = torch.zeros(n, dtype=torch.long, device=dev)
    delta = {name: torch.zeros(n, dtype=torch.float64, device=dev) for name in idx}
    rows = {name: torch.zeros(n, dtype=torch.long, device=dev) for name in idx}
    total, row_sum, count = 0.0, torch.zeros(sae_a.d_in, dtype=torch.float64, device=dev), 0
    for x in _batched(heldout, batch_rows):
        x = x.to(dev)
        a = dense_acts(sae_a, x).double()
        b_all = dense_acts(sae_b, x).double()
        e = x.double() - (a @ d_a + sae_a.b_dec.double())
        ea, eb = e @ d_a.T, e @ d_b.T
        ablate += (2 * a * ea + a.pow(2) * norm_a).sum(0)
        firing += (a > 0).sum(0)
        for name, c in idx.items():
            b = b_all[:, c]
            sv = s[name] * b
            delta[name] += (-2 * sv * eb[:, c] - 2 * a * sv * dots[name] + sv.pow(2) * norm_g[name]).sum(0)
            rows[name] += ((a > 0) | (b > 0)).sum(0)
        total += x.double().pow(2).sum().item()
        row_sum += x.double().sum(0)
        count += len(x)
    variance = total - row_sum.pow(2).sum().item() / count  # sum ||x - mean||^2
    out = {"ablate": (ablate / variance).cpu().numpy(), "firing_rows": firing.cpu().numpy()}
    for name in idx:
        out[name] = ((ablate + delta[name]) / variance).cpu().numpy()
        out[f"rows_{name}"] = rows[name].cpu().numpy()
    return out


def decoder_cosines(sae_a: SparseCoder, sae_b: SparseCoder) -> torch.Tensor:
    """Returns the float64 cosine of every decoder row of A with every decoder row of B [n_a, n_b] (the controls and
    the other matchings read the same matrix)."""
    with torch.no_grad():
        unit_a = torch.nn.functional.normalize(sae_a.W_dec.double(), dim=1)
        unit_b = torch.nn.functional.normalize(sae_b.W_dec.double(), dim=1)
        return unit_a @ unit_b.T


def controls(cos: torch.Tensor, partners: np.ndarray, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (random latent of B other than the partner, best non-partner of B, its decoder cosine) per latent of A,
    from the decoder cosines `cos` [n_a, n_b] (`decoder_cosines`)."""
    n_b = cos.shape[1]
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, n_b - 1, size=len(partners))
    random = draw + (draw >= partners)  # uniform over B without the partner
    others = cos.clone()
    others[torch.arange(len(partners)), torch.tensor(np.array(partners), dtype=torch.long, device=cos.device)] = -np.inf
    best_cos, best = others.max(1)
    return random.astype(np.int64), best.cpu().numpy().astype(np.int64), best_cos.cpu().numpy()


def matching_candidates(cos: torch.Tensor) -> dict[str, np.ndarray]:
    """Returns each other matching's decoder partner per latent of A (`MATCHING_METHODS`) from the decoder cosines
    `cos` [n_a, n_b], or {} where they do not apply (sizes differ, or more than `MAX_LATENTS` latents)."""
    n_a, n_b = cos.shape
    if n_a != n_b or n_a > MAX_LATENTS:
        return {}
    dense = cos.cpu().numpy()
    return {method: partners(dense, method) for method in MATCHING_METHODS}


def substitution_table(
    sae_a: SparseCoder, sae_b: SparseCoder, matches: pd.DataFrame, train_rows: np.ndarray | RowRange, heldout: np.ndarray | RowRange, *,
    seed: int = 0, batch_rows: int = 4096,
) -> pd.DataFrame:
    """Returns one row per latent of A (`SUBSTITUTION_COLUMNS`): its decoder partner in B with the matching's
    cosines and `shared` flag, the substitution deltas and scores of the partner and both controls, and the
    partner and score under each other matching (`MATCHING_METHODS`). Scores are NaN for latents that never fire
    on the held-out rows (nothing to substitute)."""
    if len(matches) != sae_a.num_latents or sae_a.d_in != sae_b.d_in:
        raise ValueError(f"matches cover {len(matches)} latents of A ({sae_a.num_latents} latents, d {sae_a.d_in}; B d {sae_b.d_in})")
    m = matches.sort_values("latent").reset_index(drop=True)
    partners = m["dec_partner"].to_numpy(np.int64)
    cos = decoder_cosines(sae_a, sae_b)
    random, nonpartner, nonpartner_cos = controls(cos, partners, seed=seed)
    methods = matching_candidates(cos)
    candidates = {"partner": partners, "random": random, "nonpartner": nonpartner, **methods}
    scales = {name: fit_scales(sae_a, sae_b, train_rows, c, batch_rows=batch_rows) for name, c in candidates.items()}
    deltas = substitution_deltas(sae_a, sae_b, heldout, candidates, scales, batch_rows=batch_rows)
    ablate = deltas["ablate"]
    with np.errstate(divide="ignore", invalid="ignore"):
        score = {name: np.where(deltas["firing_rows"] > 0, 1 - deltas[name] / ablate, np.nan) for name in candidates}
    table = pd.DataFrame({
        "latent": m["latent"].to_numpy(np.int64), "partner": partners, "enc_cos": m["enc_cos"], "dec_cos": m["dec_cos"],
        "shared": m["shared"].astype(bool), "firing_rows": deltas["firing_rows"], "rows_partner": deltas["rows_partner"],
        "scale_partner": scales["partner"], "delta_ablate": ablate,
        "delta_partner": deltas["partner"], "score_partner": score["partner"],
        "random": random, "scale_random": scales["random"], "delta_random": deltas["random"], "score_random": score["random"],
        "nonpartner": nonpartner, "nonpartner_cos": nonpartner_cos, "scale_nonpartner": scales["nonpartner"],
        "delta_nonpartner": deltas["nonpartner"], "score_nonpartner": score["nonpartner"],
    })
    for method in MATCHING_METHODS:
        table[method] = methods.get(method, np.full(len(table), -1, dtype=np.int64))
        table[f"score_{method}"] = score.get(method, np.full(len(table), np.nan))
    return table[SUBSTITUTION_COLUMNS]
