"""Other ways to pair the latents of two seeds, side by side with the exact Hungarian matching.

The paper's definition (and saeseeds') is the exact maximum-total-cosine bijection (`saeseeds.matching.match`).
Cross-seed correspondence benchmarks also use cheaper or softer matchings; each method here gives one
partner per latent of seed a, so every one can be read with the same threshold:

- `hungarian`: the exact matching, read from the pair's matches file (the reference).
- `greedy`: repeatedly take the most similar pair whose two latents are both still free (a bijection;
  what a sort-and-pick script does; optimal only when the cosine matrix makes the choices independent).
- `maxcos`: each latent's most similar latent of the other seed, with no exclusivity (several latents
  may pick the same partner; the `maxcos` labelling of `saeseeds.stats.agreement`).
- `sinkhorn`: entropic optimal transport with uniform marginals (POT's Sinkhorn on the cost 1 - cos,
  log domain only where the kernel could underflow); each latent's partner is the column holding most of its transported mass. As the
  regularisation goes to 0 the plan tends to the Hungarian permutation; at `SINKHORN_REG` it is close but
  not a bijection, so `injective` says how far from one it is.

Per method and side (encoder rows, decoder rows, and both: same partner on both sides, the paper's rule)
the table gives the fraction matched above the threshold and how often the partner equals Hungarian's.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
import pandas as pd

# POT and torch (similarity) are imported where a comparison runs: the workflow reads `mem_mb` and `minutes` of
# this module at every Snakemake start, and torch alone takes seconds to import.

METHODS = ("hungarian", "greedy", "maxcos", "sinkhorn")
SIDES = ("encoder", "decoder", "both")
COLUMNS = ("method", "side", "above_threshold", "agrees_with_hungarian", "agrees_above_threshold", "mean_cos",
           "injective", "marginal_error", "latents")
"""`mean_cos`: mean matched cosine (on `both`: of the smaller of the two sides' cosines). `marginal_error`: Sinkhorn only, the largest relative violation of a uniform marginal by the final plan
(0 when it converged; NaN for the other methods)."""
SINKHORN_REG = 0.01
"""Entropic regularisation on the cost 1 - cos (range [0, 2]): small enough that the plan concentrates on
one partner per latent for well-separated cosines, large enough that log-domain Sinkhorn converges in
`SINKHORN_ITERATIONS` at a few thousand latents."""
SINKHORN_ITERATIONS = 2000
MAX_LATENTS = 8192
"""Greedy and Sinkhorn hold the dense n x n matrix (and Sinkhorn a float64 plan): above this many latents
the comparison is skipped and the table says so (at 8192: 256 MB float32 cosines, 512 MB plan)."""


def mem_mb(n: int) -> int:
    """Returns the memory a comparison of `n`-latent SAEs reserves: ~64 n^2 bytes of dense matrices when compared."""
    dense = 64 * min(n, MAX_LATENTS) ** 2 if n <= MAX_LATENTS else 0
    return 1500 + math.ceil(dense / 2**20)


def minutes(n: int) -> int:
    """Returns the minutes a comparison reserves: Sinkhorn's worst case (every iteration, both sides) at
    ~20 ns per matrix entry, the log-domain fallback's cost on one CPU core (the plain path takes ~1% of it)."""
    if n > MAX_LATENTS:
        return 1
    seconds = 2 * SINKHORN_ITERATIONS * 2 * n * n * 2e-8
    return 1 + math.ceil(2 * seconds / 60)


def greedy_partners(sim: np.ndarray) -> np.ndarray:
    """Returns partner[i] of the greedy bijection: take the largest free pair, ties by (row, column).

    Each row keeps a pointer into its columns sorted by similarity; a heap holds every free row's best
    free column. Popping a row whose column is taken advances its pointer, so the cost is the sort plus
    one heap operation per skipped pair.
    """
    sim = np.asarray(sim, dtype=np.float64)
    n = _square(sim)
    order = np.argsort(-sim, axis=1, kind="stable")
    pointer = np.zeros(n, dtype=np.int64)
    heap = [(-sim[i, order[i, 0]], i, int(order[i, 0])) for i in range(n)]
    heapq.heapify(heap)
    partner = np.full(n, -1, dtype=np.int64)
    taken = np.zeros(n, dtype=bool)
    while heap:
        _, i, j = heapq.heappop(heap)
        if not taken[j]:
            partner[i], taken[j] = j, True
            continue
        while taken[order[i, pointer[i]]]:
            pointer[i] += 1
        j = int(order[i, pointer[i]])
        heapq.heappush(heap, (-sim[i, j], i, j))
    return partner


def maxcos_partners(sim: np.ndarray) -> np.ndarray:
    """Returns each row's most similar column (first on ties); not a bijection."""
    sim = np.asarray(sim)
    _square(sim)
    return np.argmax(sim, axis=1).astype(np.int64)


LOG_DOMAIN_EXPONENT = 600.0
"""Largest cost / reg for which POT's plain (scaling-vector) Sinkhorn runs instead of the log-domain one:
the Gibbs kernel exp(-cost / reg) then stays above exp(-600) ~ 1e-261, representable in float64, so the two
give the same plan (to 1e-17 on the benchmark's matrices) while the plain one is ~100x faster (two matrix-vector
products per iteration instead of two log-sum-exps over the matrix: 0.9 s against 92 s at 1152 latents).
Cosines give cost <= 2, so at `SINKHORN_REG` = 0.01 the exponent is <= 200."""


def sinkhorn_plan(sim: np.ndarray, reg: float = SINKHORN_REG, iterations: int = SINKHORN_ITERATIONS) -> np.ndarray:
    """Returns the entropic OT plan between uniform marginals for the cost 1 - sim (POT).

    Plain Sinkhorn in float64 when the kernel cannot underflow (`LOG_DOMAIN_EXPONENT`) and its plan is
    finite; the log-domain one otherwise (same fixed point, slower).
    """
    sim = np.asarray(sim, dtype=np.float64)
    n = _square(sim)
    uniform = np.full(n, 1.0 / n)
    import ot

    cost = 1.0 - sim
    # Non-convergence is reported as the plan's marginal error (`marginal_error`), not as a warning.
    if float(cost.max() - cost.min()) / reg <= LOG_DOMAIN_EXPONENT:
        with np.errstate(all="ignore"):
            plan = ot.sinkhorn(uniform, uniform, cost, reg, method="sinkhorn", numItermax=iterations, stopThr=1e-9,
                               warn=False)
        if np.isfinite(plan).all() and plan.sum() > 0:
            return plan
    return ot.sinkhorn(uniform, uniform, cost, reg, method="sinkhorn_log", numItermax=iterations, stopThr=1e-9,
                       warn=False)


def marginal_error(plan: np.ndarray) -> float:
    """Returns max |n * marginal - 1| over the rows and columns of a plan meant to have uniform marginals."""
    n = plan.shape[0]
    return float(max(np.abs(plan.sum(axis=1) * n - 1).max(), np.abs(plan.sum(axis=0) * n - 1).max()))


def sinkhorn_partners(sim: np.ndarray, reg: float = SINKHORN_REG, iterations: int = SINKHORN_ITERATIONS) -> np.ndarray:
    """Returns each row's partner under the Sinkhorn plan: the column it sends most mass to."""
    return np.argmax(sinkhorn_plan(sim, reg, iterations), axis=1).astype(np.int64)


def partners(sim: np.ndarray, method: str) -> np.ndarray:
    """Returns one partner per row of `sim` under a non-exact `method` (greedy, maxcos or sinkhorn)."""
    if method == "greedy":
        return greedy_partners(sim)
    if method == "maxcos":
        return maxcos_partners(sim)
    if method == "sinkhorn":
        return sinkhorn_partners(sim)
    raise ValueError(f"method={method!r}: must be one of {METHODS[1:]} (hungarian comes from the matches file)")


def _square(sim: np.ndarray) -> int:
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1] or sim.shape[0] == 0:
        raise ValueError(f"similarity matrix must be square and non-empty, got shape {sim.shape}")
    return int(sim.shape[0])


def agreement_rows(
    method: str,
    enc: tuple[np.ndarray, np.ndarray],
    dec: tuple[np.ndarray, np.ndarray],
    exact_enc: np.ndarray,
    exact_dec: np.ndarray,
    threshold: float,
) -> list[dict]:
    """Returns the three table rows (encoder, decoder, both) of one method's (partner, cos) per side.

    `agrees_with_hungarian`: fraction of latents whose partner is Hungarian's (on `both`: on both sides).
    `agrees_above_threshold`: among latents above the threshold under this method or under Hungarian,
    the fraction that both put above it with the same partner (how far the labelling itself moves).
    """
    rows = []
    (pe, ce), (pd_, cd) = enc, dec
    for side, (p, c, exact) in (("encoder", (pe, ce, exact_enc)), ("decoder", (pd_, cd, exact_dec))):
        rows.append(_row(method, side, p, c >= threshold, p == exact, c))
    both_above = (pe == pd_) & (ce >= threshold) & (cd >= threshold)
    rows.append(_row(method, "both", pe, both_above, (pe == exact_enc) & (pd_ == exact_dec), np.minimum(ce, cd)))
    return rows


def _row(method, side, partner, above, agree, cos) -> dict:
    return {
        "method": method, "side": side, "above_threshold": float(above.mean()),
        "agrees_with_hungarian": float(agree.mean()), "mean_cos": float(np.nanmean(np.asarray(cos, np.float64))),  # NaN: a latent left unmatched (sizes differ)
        "injective": float(len(np.unique(partner[partner >= 0])) / max(1, int((partner >= 0).sum()))), "latents": int(len(partner)),
        "marginal_error": float("nan"),
        "_above": above, "_agree": agree,
    }


def compare_matchings(
    enc_a: np.ndarray,
    dec_a: np.ndarray,
    enc_b: np.ndarray,
    dec_b: np.ndarray,
    matches: pd.DataFrame,
    threshold: float,
    *,
    device: str | None = None,
    max_latents: int = MAX_LATENTS,
) -> pd.DataFrame:
    """Returns the side-by-side table (`COLUMNS`) of the four matchings of one seed pair.

    `matches` is the pair's matches table (the exact Hungarian partners and cosines of both sides).
    With more than `max_latents` latents only Hungarian's rows are returned, the others being too large
    to hold densely (see `MAX_LATENTS`); so are they for two dictionaries of different sizes (external
    sets), where greedy, max-cos and Sinkhorn with uniform marginals have no one-to-one answer to compare.
    """
    n = len(matches)
    if enc_a.shape[0] != n or dec_a.shape[0] != n:
        raise ValueError(f"matches table has {n} latents, the checkpoints {enc_a.shape[0]}")
    sims = None
    if n <= max_latents and enc_b.shape[0] == n:
        from saeseeds.matching.similarity import dense_cosines, resolve_device, unit_rows

        dev = resolve_device(device)
        sims = {side: dense_cosines(unit_rows(a, dev), unit_rows(b, dev))
                for side, (a, b) in (("encoder", (enc_a, enc_b)), ("decoder", (dec_a, dec_b)))}
    return compare_similarities(sims, matches, threshold)


def compare_similarities(sims: dict[str, np.ndarray] | None, matches: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Returns the table of `compare_matchings` from the encoder and decoder cosine matrices
    (`sims` keyed "encoder", "decoder"; None: Hungarian's rows only)."""
    n = len(matches)
    exact_enc, exact_dec = matches["enc_partner"].to_numpy(np.int64), matches["dec_partner"].to_numpy(np.int64)
    exact = {"encoder": (exact_enc, matches["enc_cos"].to_numpy(np.float32)),
             "decoder": (exact_dec, matches["dec_cos"].to_numpy(np.float32))}
    per_method = {"hungarian": agreement_rows("hungarian", exact["encoder"], exact["decoder"], exact_enc, exact_dec, threshold)}
    if sims is not None:
        errors = {}
        for method in METHODS[1:]:
            got = {}
            for side, sim in sims.items():
                if method == "sinkhorn":
                    plan = sinkhorn_plan(sim)
                    p, errors[side] = np.argmax(plan, axis=1).astype(np.int64), marginal_error(plan)
                else:
                    p = partners(sim, method)
                got[side] = (p, sim[np.arange(n), p])
            per_method[method] = agreement_rows(method, got["encoder"], got["decoder"], exact_enc, exact_dec, threshold)
        errors["both"] = max(errors.values())
        for r in per_method["sinkhorn"]:
            r["marginal_error"] = errors[r["side"]]
    exact_above = {r["side"]: r["_above"] for r in per_method["hungarian"]}
    rows = []
    for method_rows in per_method.values():
        for r in method_rows:
            either = r["_above"] | exact_above[r["side"]]
            same = r["_above"] & exact_above[r["side"]] & r["_agree"]
            r["agrees_above_threshold"] = float(same.sum() / either.sum()) if either.any() else float("nan")
            rows.append({c: r[c] for c in COLUMNS})
    return pd.DataFrame(rows, columns=list(COLUMNS))
