"""Power-law fits of the only-in-base fraction against the number of seeds (the paper's Fig. 2, right).

The paper reports that y(n) = a * n^-b + c fits "significantly better" than y(n) = a * n^-b, i.e. that a
floor of seed-specific latents remains however many seeds are trained. We fit both by least squares on
the curve of means and compare them with AIC/BIC and the nested-model F statistic. The F-test's p-value
assumes independent errors at each point; the only-in-base curve's points are means over the same N SAEs,
so the workflow reports F as a descriptive number only, and its uncertainty statements come from
resampling seeds (`saeseeds.stats.jackknife`: intervals for c and for ΔAIC).

Which curve is fitted: for each number of seeds n = 2..N, the mean of `only_in_base` over every
(subset, base) row of that size in `subsets.parquet`, each row weighted equally (the paper's average).
The fit itself is unweighted (every n counts the same): the spread across subsets is not measurement
noise of independent samples (all subsets reuse the same N SAEs), so 1/std^2 weights would overstate
the precision of the large-n points, where few subsets exist.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

# scipy (optimize, stats) is imported inside the fits: the figures import this module for its constants and curves
# only, and importing scipy.optimize with scipy.stats cost each figure job about 1 s.

MIN_POINTS_PLAIN = 3
"""The two-parameter model needs one residual degree of freedom for standard errors: n = 2..4, so 4 seeds."""

MIN_POINTS_OFFSET = 4
"""The three-parameter model needs one residual degree of freedom for the F-test: 5 seeds."""

PLAIN = "a * n^-b"
OFFSET = "a * n^-b + c"


def power_law(n: np.ndarray, a: float, b: float) -> np.ndarray:
    """Returns a * n^-b."""
    return a * np.power(n, -b)


def power_law_offset(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """Returns a * n^-b + c."""
    return a * np.power(n, -b) + c


@dataclass(frozen=True)
class PowerLawFit:
    """One least-squares fit of a power law; every float is finite or None (JSON-able)."""

    model: str
    """Formula of the model: `PLAIN` or `OFFSET`."""
    params: dict[str, float]
    """Best-fit parameters by name (a, b and, for the offset model, c)."""
    stderr: dict[str, float | None]
    """Standard error of each parameter from the covariance of curve_fit (scaled by the residual
    variance); None where it is undefined (parameter on a bound, or a singular Jacobian)."""
    rss: float
    """Residual sum of squares on the fitted points."""
    n_points: int
    """Number of points fitted."""
    aic: float | None
    """Akaike information criterion for Gaussian errors, K ln(RSS/K) + 2(p+1), counting the noise variance
    as a parameter; None when RSS is 0 (a perfect fit has no finite likelihood)."""
    aicc: float | None
    """AIC with the small-sample correction, which matters at K = 8 points; None when K - (p+1) - 1 <= 0."""
    bic: float | None
    """Bayesian information criterion, K ln(RSS/K) + (p+1) ln K; None when RSS is 0."""

    def predict(self, n: np.ndarray | Sequence[float]) -> np.ndarray:
        """Returns the fitted curve at `n`."""
        n = np.asarray(n, dtype=float)
        if self.model == PLAIN:
            return power_law(n, self.params["a"], self.params["b"])
        return power_law_offset(n, self.params["a"], self.params["b"], self.params["c"])


@dataclass(frozen=True)
class PowerLawComparison:
    """Both power-law fits of one only-in-base curve and their comparison; JSON-able via `to_dict`."""

    n: list[int]
    """Number of seeds of each fitted point."""
    y: list[float]
    """Mean only-in-base fraction at each n (the fitted values)."""
    plain: PowerLawFit
    """Fit of y = a * n^-b."""
    offset: PowerLawFit | None
    """Fit of y = a * n^-b + c with c in [0, 1]; None when it cannot be fitted (see `offset_skipped`)."""
    offset_skipped: str | None
    """Why the offset model was not fitted (too few points, constant y); None when it was."""
    f_statistic: float | None
    """Nested-model F statistic, ((RSS_plain - RSS_offset) / 1) / (RSS_offset / (K - 3)); None without an
    offset fit or when RSS_offset is 0."""
    f_pvalue: float | None
    """P-value of the F-test that the offset term improves the fit; valid only for independent errors at
    the points, which the only-in-base curve does not have, so the workflow's tables and figures omit it."""
    delta_aic: float | None
    """AIC(offset) - AIC(plain); negative favours the offset model."""
    delta_bic: float | None
    """BIC(offset) - BIC(plain); negative favours the offset model."""
    weighting: str
    """How the points were weighted in the fit (always 'unweighted' here; the means are unweighted over
    (subset, base) rows, see the module docstring)."""

    def to_dict(self) -> dict[str, Any]:
        """Returns a plain dict that `json.dumps(..., allow_nan=False)` accepts."""
        return asdict(self)

    def to_json(self) -> str:
        """Returns the result as indented, key-sorted JSON (same input, same bytes)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False) + "\n"


def only_in_base_curve(subsets: pd.DataFrame) -> pd.DataFrame:
    """Returns one row per subset size: `size, mean, std, min, max, count` of `only_in_base`.

    Every (subset, base) row counts the same in the mean. `std` uses ddof=0 because the rows are the
    complete set of subsets and bases, not a sample of them.
    """
    missing = {"size", "only_in_base"} - set(subsets.columns)
    if missing:
        raise ValueError(f"subsets table lacks column(s) {sorted(missing)}; has {list(subsets.columns)}")
    if subsets.empty:
        raise ValueError("subsets table is empty")
    values = subsets["only_in_base"].to_numpy(dtype=float)
    if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
        raise ValueError(
            f"only_in_base must be fractions in [0, 1]; got min {np.nanmin(values)}, max {np.nanmax(values)}"
        )
    grouped = subsets.groupby("size", sort=True)["only_in_base"]
    curve = pd.DataFrame(
        {
            "mean": grouped.mean(),
            "std": grouped.std(ddof=0),
            "min": grouped.min(),
            "max": grouped.max(),
            "count": grouped.size(),
        }
    ).reset_index()
    curve["size"] = curve["size"].astype(int)
    if curve["size"].min() < 2:
        raise ValueError(f"subset sizes must be >= 2; got {curve['size'].min()}")
    return curve


def fit_only_in_base(subsets: pd.DataFrame) -> PowerLawComparison:
    """Returns both power-law fits of the mean only-in-base fraction vs number of seeds in `subsets`."""
    curve = only_in_base_curve(subsets)
    return fit_power_laws(curve["size"].to_numpy(), curve["mean"].to_numpy())


def fit_power_laws(n: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> PowerLawComparison:
    """Returns the fits of y = a n^-b and y = a n^-b + c to the points (n, y) and their comparison.

    Raises ValueError for fewer than `MIN_POINTS_PLAIN` points, non-finite values, n <= 0, repeated n
    or y < 0. The offset model is skipped, with the reason recorded, for
    fewer than `MIN_POINTS_OFFSET` points or a constant y (then a, b and c are not identifiable).
    """
    n_arr = np.asarray(n, dtype=float)
    y_arr = np.asarray(y, dtype=float)
    if n_arr.ndim != 1 or n_arr.shape != y_arr.shape:
        raise ValueError(f"n and y must be 1-d of equal length; got shapes {n_arr.shape} and {y_arr.shape}")
    if n_arr.size < MIN_POINTS_PLAIN:
        raise ValueError(
            f"a power-law fit needs at least {MIN_POINTS_PLAIN} points (numbers of seeds), got {n_arr.size}: "
            f"n={n_arr.tolist()}; train at least {MIN_POINTS_PLAIN + 1} seeds"
        )
    if not (np.all(np.isfinite(n_arr)) and np.all(np.isfinite(y_arr))):
        raise ValueError(f"n and y must be finite; got n={n_arr.tolist()}, y={y_arr.tolist()}")
    if n_arr.min() <= 0:
        raise ValueError(f"n must be positive; got {n_arr.tolist()}")
    if np.unique(n_arr).size != n_arr.size:
        raise ValueError(f"n must not repeat; got {n_arr.tolist()}")
    if y_arr.min() < 0:
        raise ValueError(f"y must be non-negative fractions; got {y_arr.tolist()}")
    order = np.argsort(n_arr)
    n_arr, y_arr = n_arr[order], y_arr[order]

    constant = np.ptp(y_arr) <= 1e-12 * max(1.0, float(y_arr.max()))
    offset: PowerLawFit | None = None
    skipped: str | None = None
    if constant:
        # y = y0 exactly (a = y0, b = 0); with zero residuals there is no uncertainty estimate, and
        # with y0 = 0 no b either, so report the exact solution rather than an optimiser's wander.
        plain = PowerLawFit(
            model=PLAIN, params={"a": float(y_arr[0]), "b": 0.0}, stderr={"a": None, "b": None},
            rss=0.0, n_points=int(n_arr.size), aic=None, aicc=None, bic=None,
        )
        skipped = f"y is constant ({y_arr[0]:.6g}); a, b and c are not identifiable"
    else:
        plain = _fit_plain(n_arr, y_arr)
        if n_arr.size < MIN_POINTS_OFFSET:
            skipped = (
                f"{n_arr.size} points; the offset model needs at least {MIN_POINTS_OFFSET} "
                f"(train at least {MIN_POINTS_OFFSET + 1} seeds)"
            )
        else:
            offset = _fit_offset(n_arr, y_arr, plain)

    f_stat = f_p = d_aic = d_bic = None
    if offset is not None:
        dof = n_arr.size - 3
        # Nested models: the offset model contains the plain one (c = 0), so its RSS cannot be larger
        # at the optimum; clip the tiny negative differences left by finite optimiser tolerance.
        gain = max(plain.rss - offset.rss, 0.0)
        if offset.rss > 0:
            f_stat = gain / (offset.rss / dof)
            from scipy import stats  # here, not at the top: see the module's imports

            f_p = float(stats.f.sf(f_stat, 1, dof))
        if offset.aic is not None and plain.aic is not None:
            d_aic = offset.aic - plain.aic
        if offset.bic is not None and plain.bic is not None:
            d_bic = offset.bic - plain.bic

    return PowerLawComparison(
        n=[int(v) if float(v).is_integer() else float(v) for v in n_arr],
        y=[float(v) for v in y_arr],
        plain=plain,
        offset=offset,
        offset_skipped=skipped,
        f_statistic=_finite_or_none(f_stat),
        f_pvalue=_finite_or_none(f_p),
        delta_aic=_finite_or_none(d_aic),
        delta_bic=_finite_or_none(d_bic),
        weighting="unweighted",
    )


def _loglog_start(n: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Returns (a, b) of the straight line through (ln n, ln y), the closed-form start for curve_fit."""
    # A zero only-in-base fraction is legal data but has no logarithm; a tiny floor keeps the start finite.
    floor = max(float(y.max()), 1.0) * 1e-9
    slope, intercept = np.polyfit(np.log(n), np.log(np.maximum(y, floor)), 1)
    return float(math.exp(intercept)), float(-slope)


def _fit_plain(n: np.ndarray, y: np.ndarray) -> PowerLawFit:
    from scipy.optimize import curve_fit

    a0, b0 = _loglog_start(n, y)
    popt, pcov = curve_fit(
        power_law, n, y, p0=[a0, b0], bounds=([0.0, -np.inf], [np.inf, np.inf]), method="trf",
        x_scale="jac", ftol=1e-14, xtol=1e-14, gtol=1e-14, max_nfev=10_000,
    )
    return _make_fit(PLAIN, ("a", "b"), popt, pcov, n, y)


def _fit_offset(n: np.ndarray, y: np.ndarray, plain: PowerLawFit) -> PowerLawFit:
    from scipy.optimize import curve_fit

    lower, upper = [0.0, 0.0, 0.0], [np.inf, np.inf, 1.0]
    # Least squares in (a, b, c) has a long flat valley; start from the best of a grid over c (each c
    # gives a closed-form log-log line for y - c) and from the plain fit with c = 0, keep the best.
    starts = [[plain.params["a"], max(plain.params["b"], 0.0), 0.0]]
    best_rss, best_start = np.inf, None
    for c in np.linspace(0.0, y.min(), 64, endpoint=False):
        a, b = _loglog_start(n, y - c)
        rss = float(np.sum((power_law_offset(n, a, b, c) - y) ** 2))
        if rss < best_rss and b >= 0:
            best_rss, best_start = rss, [a, b, float(c)]
    if best_start is not None:
        starts.append(best_start)
    results = []
    for p0 in starts:
        p0 = np.clip(p0, lower, [1e12, 1e12, 1.0])
        try:
            popt, pcov = curve_fit(
                power_law_offset, n, y, p0=p0, bounds=(lower, upper), method="trf",
                x_scale="jac", ftol=1e-14, xtol=1e-14, gtol=1e-14, max_nfev=20_000,
            )
        except RuntimeError:  # max_nfev reached from this start; another start may still converge
            continue
        results.append((float(np.sum((power_law_offset(n, *popt) - y) ** 2)), popt, pcov))
    if not results:
        raise RuntimeError(f"offset power-law fit did not converge from any start; n={n.tolist()}, y={y.tolist()}")
    _, popt, pcov = min(results, key=lambda r: r[0])
    return _make_fit(OFFSET, ("a", "b", "c"), popt, pcov, n, y)


def _make_fit(model: str, names: tuple[str, ...], popt, pcov, n: np.ndarray, y: np.ndarray) -> PowerLawFit:
    k = n.size
    p = len(names)
    fitted = power_law(n, *popt) if model == PLAIN else power_law_offset(n, *popt)
    rss = float(np.sum((fitted - y) ** 2))
    with np.errstate(invalid="ignore"):
        se = np.sqrt(np.diag(pcov))
    n_params = p + 1  # the noise variance is estimated too
    if rss > 0:
        loglik_term = k * math.log(rss / k)
        aic = loglik_term + 2 * n_params
        bic = loglik_term + n_params * math.log(k)
        aicc = aic + 2 * n_params * (n_params + 1) / (k - n_params - 1) if k - n_params - 1 > 0 else None
    else:
        aic = bic = aicc = None
    return PowerLawFit(
        model=model,
        params={name: float(v) for name, v in zip(names, popt)},
        stderr={name: _finite_or_none(float(s)) for name, s in zip(names, se)},
        rss=rss,
        n_points=int(k),
        aic=aic,
        aicc=aicc,
        bic=bic,
    )


def _finite_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def fits_table(fits: dict[str, PowerLawComparison], intervals: dict[str, dict[str, float]] | None = None) -> pd.DataFrame:
    """Returns one row per (label, model) with parameters, standard errors, fit criteria and the model comparison.

    The offset row carries the F statistic as `f_statistic_descriptive` (no p-value: the points are not
    independent) and, from `intervals` (label -> `jackknife.subset_intervals`), the seed-jackknife 95%
    intervals of c and ΔAIC (`c_seed_ci_lo`, ..., NaN where the set has too few seeds).
    """
    rows = []
    for label, comparison in fits.items():
        for fit in (comparison.plain, comparison.offset):
            if fit is None:
                continue
            row = {"label": label, "model": fit.model, "points": fit.n_points}
            for name in ("a", "b", "c"):
                row[name] = fit.params.get(name)
                row[f"{name}_se"] = fit.stderr.get(name)
            row |= {"rss": fit.rss, "aic": fit.aic, "aicc": fit.aicc, "bic": fit.bic}
            if fit.model == OFFSET:
                ci = (intervals or {}).get(label, {})
                row |= {"f_statistic_descriptive": comparison.f_statistic,
                        "delta_aic": comparison.delta_aic, "delta_bic": comparison.delta_bic,
                        "c_seed_ci_lo": ci.get("powerlaw_c_ci_lo"), "c_seed_ci_hi": ci.get("powerlaw_c_ci_hi"),
                        "delta_aic_seed_ci_lo": ci.get("powerlaw_delta_aic_ci_lo"),
                        "delta_aic_seed_ci_hi": ci.get("powerlaw_delta_aic_ci_hi")}
            rows.append(row)
    columns = ["label", "model", "points", "a", "a_se", "b", "b_se", "c", "c_se", "rss", "aic", "aicc", "bic",
               "f_statistic_descriptive", "delta_aic", "delta_bic", "c_seed_ci_lo", "c_seed_ci_hi",
               "delta_aic_seed_ci_lo", "delta_aic_seed_ci_hi"]
    return pd.DataFrame(rows, columns=columns)
