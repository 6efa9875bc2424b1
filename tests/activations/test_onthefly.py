"""Activations computed on the fly are the cache's bytes, so training and example search give the same results."""

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from saeseeds.activations.caching import ActivationConfig, SiteSource, load_site, write_activations
from saeseeds.activations.corpus import load_texts, tokenize_contexts
from saeseeds.autointerp.examples import ExampleConfig, collect_examples, token_decoder
from saeseeds.activations.onthefly import OnTheFlyStore, open_on_the_fly
from saeseeds.sae.coder import SaeConfig, load_sae
from saeseeds.activations.store import StoreError
from saeseeds.sae.train import TrainConfig, train_sae

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SITE = {"model": "embedded:smollm2-135m", "revision": "main", "dataset": "embedded:kjv-pydoc"}
# Batches of 3 contexts and chunks of 80 rows: neither lines up with the other nor with the contexts of 32 tokens.
CFG = ActivationConfig(max_tokens=32 * 10, heldout_tokens=64, context_length=32, batch_size=3, chunk_rows=80)


@pytest.fixture(scope="module")
def ids(smollm):
    return tokenize_contexts(load_texts("embedded:kjv-pydoc"), smollm[1], context_length=32, max_tokens=CFG.max_tokens)


@pytest.fixture(scope="module")
def both(smollm, ids, tmp_path_factory):
    """(cached store, on-the-fly store) of layers.3.mlp on the same ten contexts."""
    cached = write_activations(tmp_path_factory.mktemp("c") / "a.zarr", smollm[0], ids, hook="layers.3.mlp", cfg=CFG, attrs=SITE)
    return cached, OnTheFlyStore("site/layers.3.mlp", smollm[0], ids, hook="layers.3.mlp", cfg=CFG, attrs=SITE)


def test_rows_are_the_bytes_of_the_cache(both):
    cached, live = both
    assert live.array.shape == cached.array.shape and live.array.chunks == cached.array.chunks
    assert live.array.dtype == cached.array.dtype == np.float16
    for key in ("n_tokens", "n_train", "n_heldout", "d_in", "context_length", "tokens_sha256", "model", "dataset", "hook"):
        assert live.attrs[key] == cached.attrs[key], key
    whole = cached.array[:]
    assert live.array[:].tobytes() == whole.tobytes()
    for lo, hi in [(0, 1), (95, 97), (31, 200), (250, 320), (5, 5)]:
        assert live.array[lo:hi].tobytes() == whole[lo:hi].tobytes(), (lo, hi)
    rows = np.array([319, 0, 97, 96, 5, 200, 5])
    assert live.array.get_orthogonal_selection((rows, slice(None))).tobytes() == whole[rows].tobytes()
    assert live.heldout().tobytes() == cached.heldout().tobytes()
    np.testing.assert_array_equal(live.token_ids(), cached.token_ids())


def test_reads_forward_only_the_batches_they_need(smollm, ids):
    live = OnTheFlyStore("s", smollm[0], ids, hook="layers.1", cfg=CFG, attrs=SITE)
    assert live.array.forward_batches == 1  # batch 0 tells the width
    live.array[0:96]  # contexts 0-2: batch 0, kept
    assert live.array.forward_batches == 1
    live.array[96 * 3 : 96 * 3 + 10]  # context 9: batch 3 only
    assert live.array.forward_batches == 2


def test_training_on_the_fly_gives_the_checkpoint_of_training_on_the_cache(both, tmp_path):
    cached, live = both
    sae, cfg = SaeConfig(num_latents=64, k=4), TrainConfig(batch_size=64, max_tokens=64 * 9, warmup_steps=2, lr=1e-3, window_rows=160)
    on_cache = train_sae(cached.path, tmp_path / "cache", sae, cfg, seed=0, data_seed=3)
    on_the_fly = train_sae(live, tmp_path / "fly", sae, cfg, seed=0, data_seed=3)
    assert on_the_fly["activations"] == "on_the_fly" and on_cache["activations"] == "cache"
    assert on_the_fly["num_steps"] == 9 and on_the_fly["tokens_seen"] > live.n_train  # two epochs
    for name in ("sae.safetensors", "firing.npy", "loss_curve.parquet", "cfg.json"):
        assert (tmp_path / "fly" / name).read_bytes() == (tmp_path / "cache" / name).read_bytes(), name
    assert on_the_fly["fvu"] == on_cache["fvu"]


def test_a_killed_run_on_the_fly_resumes_to_the_same_bytes(both, tmp_path, caplog):
    _, live = both
    sae, cfg = SaeConfig(num_latents=64, k=4), TrainConfig(batch_size=64, max_tokens=64 * 12, warmup_steps=2, lr=1e-3, state_every_steps=5)
    whole = train_sae(live, tmp_path / "whole", sae, cfg, seed=1, data_seed=3)

    def stop(step):
        if step == 7:
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        train_sae(live, tmp_path / "cut", sae, cfg, seed=1, data_seed=3, on_step=stop)
    with caplog.at_level(logging.INFO, logger="saeseeds.sae.train"):
        resumed = train_sae(live, tmp_path / "cut", sae, cfg, seed=1, data_seed=3)
    assert "resuming at step 5 of 12" in caplog.text
    assert resumed["fvu"] == whole["fvu"]
    assert (tmp_path / "cut" / "sae.safetensors").read_bytes() == (tmp_path / "whole" / "sae.safetensors").read_bytes()


def test_latent_examples_on_the_fly_are_those_of_the_cache(both, smollm, tmp_path):
    cached, live = both
    train_sae(cached.path, tmp_path / "sae", SaeConfig(num_latents=64, k=4), TrainConfig(batch_size=64, max_tokens=64 * 6, warmup_steps=2, lr=1e-3),
              seed=0, data_seed=3)
    sae = load_sae(tmp_path / "sae")
    cfg = ExampleConfig(window=16, explain_examples=3, score_active=2, score_inactive=2, n_quantiles=2, batch_rows=48)
    tables = [collect_examples(store, sae, [0, 5, 9, 33], seed=0, cfg=cfg, decode=token_decoder(smollm[1])) for store in (cached, live)]
    assert len(tables[0]) > 8
    pd.testing.assert_frame_equal(tables[0], tables[1])


def test_open_on_the_fly_loads_a_site_from_its_config_entries(tiny_model, tmp_path):
    model = {"source": tiny_model}
    dataset = {"source": "embedded:kjv-pydoc"}
    acts = {"max_tokens": 300, "heldout_tokens": 70, "context_length": 32, "batch_size": 4}
    live = open_on_the_fly(tmp_path / "site", model=model, dataset=dataset, hook="layers.1", activations=acts)
    # 300 tokens are 9 whole contexts; 70 held-out tokens round up to 3 contexts, as in a cache
    assert (live.attrs["n_tokens"], live.n_train, live.n_heldout, live.d_in) == (288, 192, 96, 16)
    assert live.attrs["weights"] == tiny_model and live.attrs["mode"] == "on_the_fly"
    with pytest.raises(ValueError, match="layers.9"):
        open_on_the_fly(tmp_path / "site", model=model, dataset=dataset, hook="layers.9", activations=acts)
    loaded, ids, attrs = load_site(SiteSource(tiny_model, "embedded:kjv-pydoc"), hooks=["layers.1"], cfg=ActivationConfig(**acts))
    with torch.no_grad():
        loaded.model.layers[0].mlp.down_proj.weight.fill_(float("nan"))
    with pytest.raises(StoreError, match=r"'layers.1'.*NaN or inf activations in batch 0"):
        OnTheFlyStore(tmp_path / "site", loaded, ids, hook="layers.1", cfg=ActivationConfig(**acts), attrs=attrs)
