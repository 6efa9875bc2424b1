"""Latent selection, example windows (top, quantile-sampled, non-active) and token ids in the store."""

import numpy as np
import pandas as pd
import pytest
import torch

from saeseeds.autointerp.examples import ExampleConfig, collect_examples, latent_activations, quantile_sample, select_latents
from saeseeds.sae.coder import SaeConfig, SparseCoder
from saeseeds.activations.store import StoreError, StoreWriter, write_store


def matches_table(dec_cos, shared=None):
    n = len(dec_cos)
    return pd.DataFrame({"latent": np.arange(n), "enc_partner": (np.arange(n) + 1) % n, "enc_cos": np.asarray(dec_cos) + 0.01,
                         "dec_partner": (np.arange(n) + 1) % n, "dec_cos": dec_cos,
                         "shared": shared if shared is not None else np.asarray(dec_cos) >= 0.7})


def test_select_latents_stratifies_by_cosine_and_pairs_counterparts():
    cos = np.linspace(0.05, 0.95, 12)
    firing = np.ones(12)
    firing[[0, 5]] = 0  # dead latents are never chosen
    table = select_latents(matches_table(cos), firing, seeds=(3, 7), n_latents=3, rng_seed=1)
    a, b = table[table.seed == 3], table[table.seed == 7]
    assert len(a) == len(b) == 3 and not set(a.latent) & {0, 5}
    # the 10 firing latents sorted by cosine fall in bins of 4, 3, 3: one latent from each
    alive = [i for i in range(12) if i not in (0, 5)]
    bins = [set(alive[:4]), set(alive[4:7]), set(alive[7:])]
    assert all(len(set(a.latent) & b_) == 1 for b_ in bins)
    assert list(b.latent) == list((a.latent + 1) % 12) and list(b.counterpart) == list(a.latent)
    assert (a.counterpart_seed == 7).all() and (b.counterpart_seed == 3).all()
    assert list(b.dec_cos) == list(a.dec_cos) and list(b.shared) == list(a.shared)
    every = select_latents(matches_table(cos), firing, seeds=(3, 7), n_latents=None)
    assert len(every) == 20 and sorted(every[every.seed == 3].latent) == alive
    with pytest.raises(ValueError, match="firing frequencies of seed 3"):
        select_latents(matches_table(cos), firing[:5], seeds=(3, 7), n_latents=2)


def test_quantile_sample_draws_evenly_from_equal_count_bins():
    values = np.arange(100, dtype=float)[::-1].copy()  # position p holds value 99 - p
    draws = quantile_sample(values, 10, 5, np.random.default_rng(0))
    assert [q for q, _ in draws] == [0, 1, 2, 3, 4] and all(len(c) == 2 for _, c in draws)
    for q, chosen in draws:
        assert all(20 * q <= values[c] < 20 * (q + 1) for c in chosen)  # quantile 0 holds the weakest
    uneven = quantile_sample(values, 7, 3, np.random.default_rng(0))
    assert [len(c) for _, c in uneven] == [2, 2, 3]  # the remainder goes to the strongest bins
    few = quantile_sample(np.array([3.0, 1.0, 2.0]), 10, 5, np.random.default_rng(0))
    assert sorted(int(c) for _, chosen in few for c in chosen) == [0, 1, 2]
    assert quantile_sample(np.array([]), 4, 2, np.random.default_rng(0)) == []


def _store_with_tokens(path, rows, context, n_heldout):
    writer = StoreWriter(path, len(rows), rows.shape[1], dtype="float32")
    writer.append(rows)
    writer.add_token_ids(np.arange(len(rows)).reshape(-1, context) % 1000)
    return writer.finish({"model": "m", "revision": "main", "dataset": "d", "hook": "h", "n_train": len(rows) - n_heldout, "n_heldout": n_heldout})


def test_collect_examples_matches_brute_force(tmp_path):
    rng = np.random.default_rng(0)
    context, window, d = 16, 4, 8
    rows = rng.normal(size=(context * 12, d)).astype(np.float32)  # 12 contexts: 8 training, 4 held out
    store = _store_with_tokens(tmp_path / "s.zarr", rows, context, n_heldout=4 * context)
    sae = SparseCoder(d, SaeConfig(arch="topk", num_latents=12, k=2), seed=0).eval()
    latents = [1, 4, 9]
    cfg = ExampleConfig(window=window, explain_examples=3, score_active=4, score_inactive=3, n_quantiles=2, batch_rows=20)
    table = collect_examples(store, sae, latents, seed=5, cfg=cfg, decode=lambda ids: {int(i): f"<{int(i)}>" for i in ids})
    with torch.no_grad():
        acts = latent_activations(sae, torch.from_numpy(rows), torch.tensor(latents)).numpy()
    wmax = acts.reshape(-1, window, len(latents)).max(axis=1)
    n_train_windows = 8 * context // window
    for j, latent in enumerate(latents):
        mine = table[table.latent == latent]
        top = mine[mine.role == "explain"].sort_values("activation", ascending=False)
        expected = np.sort(wmax[:n_train_windows, j])[::-1][:3]
        np.testing.assert_allclose(top.activation, expected[expected > 0], rtol=1e-5)
        assert (top.window < n_train_windows).all()
        active, inactive = mine[mine.role == "active"], mine[mine.role == "inactive"]
        held_active = int((wmax[n_train_windows:, j] > 0).sum())
        assert len(active) == min(4, held_active) and len(inactive) == min(3, len(wmax) - n_train_windows - held_active)
        assert (active.window >= n_train_windows).all() and (inactive.window >= n_train_windows).all()
        np.testing.assert_allclose(active.activation, wmax[active.window, j], rtol=1e-5)
        assert (wmax[inactive.window, j] == 0).all()
        for r in mine.itertuples():
            np.testing.assert_allclose(r.token_acts, acts[r.window * window : (r.window + 1) * window, j], rtol=1e-5, atol=1e-6)
            assert list(r.tokens) == list(range(r.window * window, (r.window + 1) * window))  # ids were row % 1000
            assert list(r.token_strs) == [f"<{t}>" for t in r.tokens]
    assert (table.seed == 5).all()


def test_store_keeps_token_ids_and_old_stores_fail_naming_the_store(tmp_path):
    rows = np.zeros((32, 4), dtype=np.float32)
    store = _store_with_tokens(tmp_path / "t.zarr", rows, 8, n_heldout=8)
    np.testing.assert_array_equal(store.token_ids(), np.arange(32).reshape(4, 8))
    old = write_store(tmp_path / "old.zarr", rows, n_heldout=8, attrs={})
    with pytest.raises(StoreError, match=r"old\.zarr: no token ids"):
        old.token_ids()
    writer = StoreWriter(tmp_path / "bad.zarr", 32, 4)
    with pytest.raises(StoreError, match="do not cover the store's 32 rows"):
        writer.add_token_ids(np.zeros((3, 8), dtype=np.int64))


def test_window_must_divide_the_context(tmp_path):
    store = _store_with_tokens(tmp_path / "s.zarr", np.zeros((48, 4), dtype=np.float32), 16, n_heldout=16)
    sae = SparseCoder(4, SaeConfig(arch="topk", num_latents=4, k=1), seed=0)
    with pytest.raises(ValueError, match="autointerp.window=5 does not divide the store's context length 16"):
        collect_examples(store, sae, [0], seed=0, cfg=ExampleConfig(window=5), decode=dict)


def test_cached_activations_keep_their_token_ids(smollm, tmp_path, torch_one_thread):
    from saeseeds.activations.caching import ActivationConfig, write_activations

    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14, 15, 16]])
    cfg = ActivationConfig(max_tokens=16, heldout_tokens=8, context_length=8, batch_size=1)
    store = write_activations(tmp_path / "a.zarr", smollm[0], ids, hook="layers.0.mlp", cfg=cfg, attrs={"model": "m", "revision": "main", "dataset": "d"})
    np.testing.assert_array_equal(store.token_ids(), ids.numpy())
