"""Synthetic activations with known features: x = sum_i a_i f_i + noise, written as an activation store.

An LLM's true features are unknown, so the paper can show that seeds disagree but not which seed is
right. Here the dictionary F (n_true unit vectors in R^d, usually n_true > d: superposition) and each
feature's firing probability are chosen, so every latent an SAE learns can be checked against the
truth (`saeseeds.synthetic.recovery`). The rows go through `StoreWriter`, so training and matching read them
exactly like cached LLM activations; the ground truth is saved beside the store.

Firing: feature i (index = frequency rank) fires with probability p_i proportional to (i + 1)^-s
(Zipf), scaled so the expected number of active features per token is `mean_active`. Optionally
features fire together: a Gaussian copula with one shared factor per group of consecutive features
(correlation rho) keeps every marginal p_i exact; a hierarchy makes child features fire only with
their parent, with the conditional probability p_child / p_parent, again keeping p_child exact.
Magnitudes of active features are Gamma distributed (non-negative, given mean and std).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from saeseeds.common.atomic import atomic_write
from saeseeds.errors import SyntheticError  # noqa: F401 (raised here; importable from here too)

if TYPE_CHECKING:
    from saeseeds.activations.store import ActivationStore

# scipy.special and the store (zarr) are imported where rows are drawn and written: the workflow imports this
# module in every Snakemake start (one per job on a cluster) only for SOURCE and the resources.

SOURCE = "synthetic"
"""`models.NAME.source` value that selects this generator instead of a language model."""

CHUNK_ROWS = 8192
"""Rows drawn per step. Fixed, so the bytes of a store depend only on the config and the seed."""


@dataclass(kw_only=True)
class SyntheticConfig:
    """The generative model of one synthetic site (the `synthetic:` block of a model entry)."""

    d: int
    """Dimension of the activations."""

    n_true: int
    """Number of true features (rows of the dictionary); n_true > d puts them in superposition."""

    mean_active: float
    """Expected number of active features per token (the sum of all firing probabilities)."""

    zipf_exponent: float = 1.0
    """Firing probability of the feature of rank i is proportional to (i + 1)^-zipf_exponent; 0 = uniform."""

    magnitude_mean: float = 1.0
    """Mean coefficient of an active feature."""

    magnitude_std: float = 0.25
    """Std of an active feature's coefficient (Gamma distributed, so never negative); 0 = constant."""

    noise_std: float = 0.0
    """Std of isotropic Gaussian noise per coordinate added to every row."""

    orthogonal: bool = False
    """Orthonormal dictionary (needs n_true <= d): the easy, superposition-free setting."""

    correlation: float = 0.0
    """Correlation rho in [0, 1) of the Gaussian copula shared by each group of features: co-firing
    without changing any feature's own frequency."""

    correlation_group: int = 8
    """Consecutive (by rank) non-child features that share one copula factor."""

    hierarchy_parents: int = 0
    """The most frequent this-many features are parents; 0 = no hierarchy."""

    children_per_parent: int = 0
    """Children per parent; child j (rank hierarchy_parents + j) belongs to parent j mod hierarchy_parents
    and fires only when that parent fires."""

    seed: int = 0
    """Seed of the dictionary, the firing pattern, the magnitudes and the noise."""

    def __post_init__(self) -> None:
        for key in ("d", "n_true", "correlation_group"):
            _require(key, getattr(self, key), int, minimum=1)
        for key in ("hierarchy_parents", "children_per_parent", "seed"):
            _require(key, getattr(self, key), int, minimum=0)
        for key in ("mean_active", "zipf_exponent", "magnitude_mean", "magnitude_std", "noise_std", "correlation"):
            _require(key, getattr(self, key), float, minimum=0)
        if not isinstance(self.orthogonal, bool):
            raise SyntheticError(f"synthetic.orthogonal must be true or false, got {self.orthogonal!r}")
        if self.mean_active <= 0 or self.magnitude_mean <= 0:
            raise SyntheticError("synthetic.mean_active and synthetic.magnitude_mean must be > 0")
        if self.correlation >= 1:
            raise SyntheticError(f"synthetic.correlation must be in [0, 1), got {self.correlation}")
        if self.orthogonal and self.n_true > self.d:
            raise SyntheticError(f"synthetic.orthogonal needs n_true <= d, got n_true={self.n_true} > d={self.d}")
        if (self.hierarchy_parents == 0) != (self.children_per_parent == 0):
            raise SyntheticError("synthetic.hierarchy_parents and synthetic.children_per_parent must both be 0 or both > 0")
        in_tree = self.hierarchy_parents * (1 + self.children_per_parent)
        if in_tree > self.n_true:
            raise SyntheticError(
                f"synthetic.hierarchy_parents * (1 + children_per_parent) = {in_tree} exceeds n_true={self.n_true}"
            )
        top = firing_probabilities(self.n_true, self.zipf_exponent, self.mean_active)[0]
        if top > 1:
            raise SyntheticError(
                f"synthetic.mean_active={self.mean_active}: with zipf_exponent={self.zipf_exponent} and "
                f"n_true={self.n_true} the most frequent feature would fire with probability {top:.3g} > 1"
            )

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SyntheticConfig:
        """Returns the config from a `synthetic:` block; unknown keys are an error, not ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise SyntheticError(f"synthetic: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**raw)


def _require(key: str, value: Any, kind: type, *, minimum: float) -> None:
    ok = isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool)
    if not ok or not np.isfinite(value) or value < minimum:
        raise SyntheticError(f"synthetic.{key} must be a {kind.__name__} >= {minimum}, got {value!r}")


def firing_probabilities(n_true: int, exponent: float, mean_active: float) -> np.ndarray:
    """Returns p [n_true], p_i proportional to (i + 1)^-exponent with sum(p) = mean_active (not clipped)."""
    weights = np.arange(1, n_true + 1, dtype=np.float64) ** -exponent
    return mean_active * weights / weights.sum()


@dataclass(frozen=True)
class GroundTruth:
    """What the generator knows and an SAE must find: the dictionary and each feature's role and frequency."""

    dictionary: np.ndarray
    """[n_true, d] float32 unit rows."""
    frequency: np.ndarray
    """[n_true] float64 firing probability (the parameter, not an estimate)."""
    parent: np.ndarray
    """[n_true] int64 parent feature of a child, -1 for every other feature."""
    group: np.ndarray
    """[n_true] int64 copula group of a non-child feature, -1 for children."""

    def save(self, path: str | Path, *, empirical_frequency: np.ndarray, config: SyntheticConfig) -> None:
        """Writes an .npz (arrays above, the observed frequency over all rows, the config as JSON), atomically."""
        import json

        arrays = {**asdict(self), "empirical_frequency": empirical_frequency,
                  "config_json": np.array(json.dumps(asdict(config), sort_keys=True))}

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        atomic_write(path, write)


def load_ground_truth(path: str | Path) -> tuple[GroundTruth, np.ndarray]:
    """Returns (GroundTruth, empirical frequency) from a ground-truth .npz written by `GroundTruth.save`."""
    path = Path(path)
    if not path.is_file():
        raise SyntheticError(f"{path}: no ground-truth file")
    with np.load(path) as z:
        missing = [k for k in ("dictionary", "frequency", "parent", "group", "empirical_frequency") if k not in z]
        if missing:
            raise SyntheticError(f"{path}: arrays {missing} missing")
        truth = GroundTruth(z["dictionary"], z["frequency"], z["parent"], z["group"])
        empirical = z["empirical_frequency"]
    n = len(truth.frequency)
    if truth.dictionary.ndim != 2 or truth.dictionary.shape[0] != n or any(len(a) != n for a in (truth.parent, truth.group, empirical)):
        raise SyntheticError(f"{path}: arrays disagree on the number of features")
    return truth, empirical


class Generator:
    """Draws rows of synthetic activations (and their coefficients) from one `SyntheticConfig`."""

    def __init__(self, cfg: SyntheticConfig):
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.truth = GroundTruth(
            dictionary=self._dictionary(),
            frequency=firing_probabilities(cfg.n_true, cfg.zipf_exponent, cfg.mean_active),
            parent=self._parents(),
            group=np.full(cfg.n_true, -1, dtype=np.int64),
        )
        free = self.truth.parent < 0
        self.truth.group[free] = np.arange(int(free.sum())) // cfg.correlation_group
        self._free = np.flatnonzero(free)
        self._children = np.flatnonzero(~free)
        from scipy.special import ndtri

        self._threshold = ndtri(self.truth.frequency[self._free])
        parent_p = self.truth.frequency[self.truth.parent[self._children]]
        self._child_p = self.truth.frequency[self._children] / parent_p
        gamma = cfg.magnitude_std > 0
        self._shape = (cfg.magnitude_mean / cfg.magnitude_std) ** 2 if gamma else None
        self._scale = cfg.magnitude_std**2 / cfg.magnitude_mean if gamma else None

    def _dictionary(self) -> np.ndarray:
        cfg = self.cfg
        g = self.rng.standard_normal((max(cfg.n_true, cfg.d), cfg.d))
        if cfg.orthogonal:
            q, r = np.linalg.qr(g[: cfg.d].T)
            q = q * np.sign(np.diag(r))  # a unique (Haar-distributed) orthonormal basis
            f = q.T[: cfg.n_true]
        else:
            f = g[: cfg.n_true]
        return (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32)

    def _parents(self) -> np.ndarray:
        cfg = self.cfg
        parent = np.full(cfg.n_true, -1, dtype=np.int64)
        m = cfg.hierarchy_parents
        n_children = m * cfg.children_per_parent
        # Children follow the parents in rank, so p_child <= p_parent and p_child / p_parent is a probability.
        parent[m : m + n_children] = np.arange(n_children) % m if m else []
        return parent

    def coefficients(self, rows: int) -> np.ndarray:
        """Returns non-negative coefficients [rows, n_true] float32; zero where a feature is inactive."""
        cfg, n = self.cfg, self.cfg.n_true
        active = np.zeros((rows, n), dtype=bool)
        if cfg.correlation > 0:
            n_groups = int(self.truth.group.max()) + 1
            shared = self.rng.standard_normal((rows, n_groups))[:, self.truth.group[self._free]]
            own = self.rng.standard_normal((rows, len(self._free)))
            z = np.sqrt(cfg.correlation) * shared + np.sqrt(1 - cfg.correlation) * own
            active[:, self._free] = z < self._threshold
        else:
            active[:, self._free] = self.rng.random((rows, len(self._free))) < self.truth.frequency[self._free]
        if len(self._children):
            parent_on = active[:, self.truth.parent[self._children]]
            active[:, self._children] = parent_on & (self.rng.random((rows, len(self._children))) < self._child_p)
        coef = np.zeros((rows, n), dtype=np.float32)
        count = int(active.sum())
        if self._shape is None:
            coef[active] = cfg.magnitude_mean
        else:
            coef[active] = self.rng.gamma(self._shape, self._scale, size=count)
        return coef

    def sample(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Returns (coefficients [rows, n_true], activations [rows, d]) as float32, both from one draw."""
        coef = self.coefficients(rows)
        x = coef @ self.truth.dictionary
        if self.cfg.noise_std > 0:
            x += self.cfg.noise_std * self.rng.standard_normal(x.shape, dtype=np.float32)
        return coef, x


def write_synthetic_store(
    store_path: str | Path,
    truth_path: str | Path,
    cfg: SyntheticConfig,
    *,
    n_tokens: int,
    n_heldout: int,
    dtype: str = "float16",
    attrs: dict[str, Any] | None = None,
) -> ActivationStore:
    """Returns the opened store of `n_tokens` synthetic rows (the last `n_heldout` held out); saves the truth.

    The ground truth is written first and the store last: the store's `complete` attr is what marks a
    finished site.
    """
    if not 0 < n_heldout < n_tokens:
        raise SyntheticError(f"heldout_tokens={n_heldout} must be > 0 and leave training rows out of max_tokens={n_tokens}")
    from saeseeds.activations.store import StoreWriter

    gen = Generator(cfg)
    writer = StoreWriter(store_path, n_tokens, cfg.d, dtype=dtype)
    counts = np.zeros(cfg.n_true, dtype=np.int64)
    digest = hashlib.sha256()
    for first in range(0, n_tokens, CHUNK_ROWS):
        coef, x = gen.sample(min(CHUNK_ROWS, n_tokens - first))
        counts += (coef > 0).sum(axis=0)
        with np.errstate(over="ignore"):  # reported below, naming the key to change
            rows = x.astype(dtype)
        if not np.isfinite(rows).all():
            raise SyntheticError(f"activations up to {np.abs(x).max():.3g} overflow {dtype}; use activations.dtype float32")
        digest.update(rows.tobytes())
        writer.append(rows)
    empirical = counts / n_tokens
    gen.truth.save(truth_path, empirical_frequency=empirical, config=cfg)
    meta = {
        "model": SOURCE,
        "revision": "none",
        "dataset": SOURCE,
        "hook": "none",
        **(attrs or {}),
        "n_train": n_tokens - n_heldout,
        "n_heldout": n_heldout,
        "dtype": dtype,
        "synthetic": asdict(cfg),
        "rows_sha256": digest.hexdigest(),
        "mean_active_observed": float(counts.sum() / n_tokens),
    }
    return writer.finish(meta)


def minutes(raw: dict[str, Any], n_tokens: int) -> int:
    """Returns a generous runtime: ~20 ns per (token, feature) for the draws plus the x = a F product."""
    seconds = n_tokens * raw["n_true"] * (20e-9 + 2 * raw["d"] / 20e9)
    return max(1, math.ceil(2 * (10 + seconds) / 60))


def mem_mb(raw: dict[str, Any]) -> int:
    """Returns memory: a chunk's firing pattern and coefficients [CHUNK_ROWS, n_true] several times over."""
    return 1000 + math.ceil(6 * 8 * CHUNK_ROWS * (raw["n_true"] + raw["d"]) / 2**20)


def disk_mb(raw: dict[str, Any], acts: dict[str, Any]) -> int:
    """Returns the store plus the ground truth."""
    itemsize = 2 if acts.get("dtype", "float16") == "float16" else 4
    return max(1, math.ceil((acts["max_tokens"] * raw["d"] * itemsize + 16 * raw["n_true"] * (raw["d"] + 4)) / 2**20))
