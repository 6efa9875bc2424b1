"""Tests of b_dec's start: the geometric median (the paper's trainer) and the batch mean (an option)."""

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from safetensors.torch import load_file

from saeseeds.sae.stacked import StackedSae
from saeseeds.sae.batches import BatchPlan
from saeseeds.sae.geometric_median import geometric_median, sum_of_distances
from saeseeds.sae.coder import SaeConfig
from saeseeds.activations.store import open_store, write_store
from saeseeds.sae.train import TrainConfig, TrainConfigError, train_saes

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def skewed_rows(n=60, d=6, seed=0):
    """Rows whose mean and median differ: exponential coordinates (skewed), float64."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.exponential(1.0, (n, d)) * rng.uniform(0.5, 2.0, d))


def test_matches_scipy_minimiser_of_the_sum_of_distances():
    x = skewed_rows()
    ours = geometric_median(x)
    objective = lambda m: float(np.linalg.norm(x.numpy() - m, axis=1).sum())  # noqa: E731
    ref = minimize(objective, x.mean(0).numpy(), method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 200_000, "maxfev": 200_000})
    assert ref.success
    # same point to 1e-5 (the rows' spread is ~1) and never a worse objective than scipy's
    assert np.abs(ours.numpy() - ref.x).max() < 1e-5
    assert sum_of_distances(x, ours) <= ref.fun + 1e-9
    # and clearly not the mean: the mean's objective is worse by far more than the tolerance
    assert sum_of_distances(x, x.mean(0)) > sum_of_distances(x, ours) + 1e-3


def test_one_outlier_moves_the_mean_not_the_median():
    x = skewed_rows(n=101, seed=1)
    with_outlier = torch.cat([x, torch.full((1, x.shape[1]), 1e4, dtype=x.dtype)])
    mean_shift = float(torch.linalg.vector_norm(with_outlier.mean(0) - x.mean(0)))
    median_shift = float(torch.linalg.vector_norm(geometric_median(with_outlier) - geometric_median(x)))
    assert mean_shift > 100  # one row in 102 at 1e4 drags the mean ~100 per coordinate
    assert median_shift < 0.05  # the median moves as if one ordinary row had been added


def test_degenerate_inputs():
    same = torch.ones(5, 3)
    assert torch.equal(geometric_median(same), torch.ones(3))
    two = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 5.0]])
    m = geometric_median(two)
    assert torch.isfinite(m).all()  # a row can coincide with the estimate without a division by zero
    with pytest.raises(ValueError, match="non-finite"):
        geometric_median(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="shape"):
        geometric_median(torch.zeros(0, 3))


def test_fresh_sae_b_dec_is_the_geometric_median_for_every_seed_stacked_or_alone():
    x = skewed_rows(n=256, d=16, seed=2).float()
    cfg = SaeConfig(num_latents=32, k=4)
    pair = StackedSae(16, cfg, [0, 1])
    pair.init_from_first_batch(x)
    want = geometric_median(x)
    assert torch.equal(pair.b_dec[0], want) and torch.equal(pair.b_dec[1], want)
    alone = StackedSae(16, cfg, [1])
    alone.init_from_first_batch(x)
    assert torch.equal(alone.b_dec[0], pair.b_dec[1])
    assert not torch.allclose(want, x.mean(0), atol=1e-2)
    means = StackedSae(16, cfg, [0, 1])
    means.init_from_first_batch(x, "mean")
    assert torch.equal(means.b_dec[0], x.mean(0)) and torch.equal(means.b_dec[1], x.mean(0))
    with pytest.raises(ValueError, match="b_dec_init='median'"):
        means.init_from_first_batch(x, "median")


def test_training_starts_b_dec_at_the_first_batch_geometric_median_or_mean(tmp_path):
    rows = skewed_rows(n=1200, d=8, seed=3).float().numpy()
    store = write_store(tmp_path / "s.zarr", rows, n_heldout=200, attrs={})
    # two steps, the first at lr 0 (warmup), the second at lr 1e-9: b_dec ends where it started (to 1e-8)
    cfg = dict(batch_size=256, max_tokens=512, warmup_steps=1, lr=1e-9)
    plan = BatchPlan(store.n_train, store.array.chunks[0], 256, 2, data_seed=5, window_rows=TrainConfig().window_rows)
    first = torch.from_numpy(np.asarray(open_store(store.path).array.get_orthogonal_selection(next(plan.indices())), dtype=np.float32))
    for how, centre in (("geometric_median", geometric_median(first)), ("mean", first.mean(0))):
        outs = [tmp_path / how / "s0", tmp_path / how / "s1"]
        train_saes(store.path, outs, SaeConfig(num_latents=16, k=2), TrainConfig(**cfg, b_dec_init=how), seeds=[0, 1], data_seed=5)
        b = [load_file(str(o / "sae.safetensors"))["b_dec"] for o in outs]
        assert torch.equal(b[0], b[1])
        assert torch.allclose(b[0], centre, atol=1e-6, rtol=0), how
    assert not torch.allclose(geometric_median(first), first.mean(0), atol=1e-2)


def test_bad_b_dec_init_names_the_key():
    with pytest.raises(TrainConfigError, match="b_dec_init='median'"):
        TrainConfig(b_dec_init="median")
