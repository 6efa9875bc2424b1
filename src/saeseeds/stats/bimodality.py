"""Bimodality of matched cosines: Sarle's coefficient and a two-component Gaussian mixture.

The paper's Figure 1 shows matched cosines between two seeds piling up in two modes, shared latents
near 1 and orphans matched to something unrelated, and that split is what makes "shared" and "orphan"
meaningful. Two named statistics say how clearly a sample of cosines has two modes:

- Sarle's bimodality coefficient BC = (g^2 + 1) / (G + 3 (n-1)^2 / ((n-2)(n-3))), with g the sample
  skewness and G the sample excess kurtosis (both bias-corrected, SAS's G1 and G2). BC is 5/9 for a
  uniform sample, 1/3 for a large normal one; above 5/9 (0.555) suggests two modes. Cheap, but a heavily
  skewed one-mode sample also scores high.
- A two-component 1-D Gaussian mixture fitted by EM: the means, sds and weights of its low and high
  components, Ashman's D = sqrt(2) |mu_high - mu_low| / sqrt(sd_low^2 + sd_high^2) (D > 2 is the usual
  line for a clean separation of two modes), the weight of the high mode (the shared-like fraction), and
  the BIC gain of two components over one. Deterministic: started from the sample's quartiles.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from saeseeds.errors import BimodalityError  # noqa: F401 (raised here; importable from here too)

SARLE_UNIFORM = 5.0 / 9.0
"""Sarle's coefficient of a uniform distribution; values above it suggest bimodality."""
ASHMAN_CLEAN = 2.0
"""Ashman's D above this: the two mixture components are cleanly separated."""


def _sample(x: Sequence[float] | np.ndarray, minimum: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).ravel()
    if len(x) < minimum:
        raise BimodalityError(f"bimodality needs at least {minimum} values, got {len(x)}")
    if not np.isfinite(x).all():
        raise BimodalityError("bimodality: sample has non-finite values")
    return x


def sarle_bc(x: Sequence[float] | np.ndarray) -> float:
    """Returns Sarle's bimodality coefficient of x (bias-corrected skewness and excess kurtosis, as SAS).

    A constant sample has no shape: NaN.
    """
    x = _sample(x, 4)
    n = len(x)
    d = x - x.mean()
    m2, m3, m4 = (d**2).mean(), (d**3).mean(), (d**4).mean()
    if m2 <= 0:
        return float("nan")
    g1 = m3 / m2**1.5
    g2 = m4 / m2**2 - 3.0
    skew = g1 * np.sqrt(n * (n - 1)) / (n - 2)
    kurt = (n - 1) / ((n - 2) * (n - 3)) * ((n + 1) * g2 + 6.0)
    return float((skew**2 + 1.0) / (kurt + 3.0 * (n - 1) ** 2 / ((n - 2) * (n - 3))))


def _normal_logpdf(x: np.ndarray, mu: float, var: float) -> np.ndarray:
    return -0.5 * (np.log(2 * np.pi * var) + (x - mu) ** 2 / var)


def gaussian_mixture(x: Sequence[float] | np.ndarray, *, max_iter: int = 500, tol: float = 1e-10, var_floor: float = 1e-6) -> dict:
    """Returns the maximum-likelihood two-component Gaussian mixture of x (EM from the quartiles) with its
    separation: mu_low, mu_high, sd_low, sd_high, weight_high, ashman_d, bic_gain (BIC of one Gaussian
    minus BIC of the mixture: > 0 means two components explain x better even at 3 more parameters),
    iterations.

    `var_floor` keeps a component from collapsing onto repeated values (the likelihood is unbounded there).
    """
    x = _sample(x, 4)
    n = len(x)
    var_all = max(float(x.var()), var_floor)
    mu = np.quantile(x, [0.25, 0.75]).astype(np.float64)
    if mu[0] == mu[1]:
        mu = np.array([x.min(), x.max()], dtype=np.float64)
    var = np.array([var_all / 4, var_all / 4])
    w = np.array([0.5, 0.5])
    prev = -np.inf
    it = 0
    for it in range(1, max_iter + 1):
        logp = np.stack([np.log(w[j]) + _normal_logpdf(x, mu[j], var[j]) for j in range(2)])
        top = logp.max(0)
        norm = top + np.log(np.exp(logp - top).sum(0))
        ll = float(norm.sum())
        resp = np.exp(logp - norm)
        nk = resp.sum(1)
        if (nk < 1e-9).any():  # a component lost every point: the sample has one mode as far as EM can tell
            break
        w = nk / n
        mu = (resp @ x) / nk
        var = np.maximum((resp * (x[None, :] - mu[:, None]) ** 2).sum(1) / nk, var_floor)
        if ll - prev < tol * max(1.0, abs(ll)):
            break
        prev = ll
    logp = np.stack([np.log(max(w[j], 1e-300)) + _normal_logpdf(x, mu[j], var[j]) for j in range(2)])
    top = logp.max(0)
    ll2 = float((top + np.log(np.exp(logp - top).sum(0))).sum())
    ll1 = float(_normal_logpdf(x, x.mean(), var_all).sum())
    bic_gain = (-2 * ll1 + 2 * np.log(n)) - (-2 * ll2 + 5 * np.log(n))
    lo, hi = (0, 1) if mu[0] <= mu[1] else (1, 0)
    sd = np.sqrt(var)
    return {
        "mu_low": float(mu[lo]), "mu_high": float(mu[hi]), "sd_low": float(sd[lo]), "sd_high": float(sd[hi]),
        "weight_high": float(w[hi]),
        "ashman_d": float(np.sqrt(2.0) * abs(mu[hi] - mu[lo]) / np.sqrt(var[lo] + var[hi])),
        "bic_gain": float(bic_gain),
        "iterations": int(it),
    }


def bimodality_stats(x: Sequence[float] | np.ndarray, prefix: str = "") -> dict[str, float]:
    """Returns {prefix + name: value} for sarle_bc and the mixture's ashman_d, weight_high, mu_low, mu_high,
    bic_gain: the columns the summary and the convergence benchmark report."""
    gm = gaussian_mixture(x)
    out = {"sarle_bc": sarle_bc(x)} | {k: gm[k] for k in ("ashman_d", "weight_high", "mu_low", "mu_high", "bic_gain")}
    return {prefix + k: v for k, v in out.items()}


def matched_cosine_bimodality(tables: Sequence) -> dict[str, float]:
    """Returns the mean over pairs (matches tables with enc_cos and dec_cos) of each bimodality statistic
    of the encoder and decoder matched cosines: enc_sarle_bc, dec_sarle_bc, enc_ashman_d, dec_ashman_d,
    enc_weight_high, dec_weight_high (the summary's columns)."""
    if not tables:
        raise BimodalityError("no matches tables")
    # NaN: a latent left without partner when the two SAEs differ in size (external sets); it has no matched cosine
    cosines = lambda t, col: t[col].to_numpy()[~np.isnan(t[col].to_numpy())]  # noqa: E731
    rows = [bimodality_stats(cosines(t, "enc_cos"), "enc_") | bimodality_stats(cosines(t, "dec_cos"), "dec_") for t in tables]
    keys = [f"{side}_{name}" for side in ("enc", "dec") for name in ("sarle_bc", "ashman_d", "weight_high")]
    return {key: float(np.mean([r[key] for r in rows])) for key in keys}
