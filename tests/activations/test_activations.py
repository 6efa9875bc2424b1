import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import LlamaForCausalLM

from saeseeds.activations.caching import ActivationConfig, SiteSource, cache_activations, write_activations, write_activations_multi
from saeseeds.activations.forward import store_rows
from saeseeds.activations.corpus import load_texts, tokenize_contexts
from saeseeds.activations.models import hooked_activations, resolve_hook
from saeseeds.activations.store import StoreError, open_store

pytestmark = pytest.mark.usefixtures("torch_one_thread")

HOOK = "layers.6.mlp"
SITE = {"model": "embedded:smollm2-135m", "revision": "main", "dataset": "embedded:kjv-pydoc"}


@pytest.fixture(scope="module")
def two_contexts(smollm):
    """Token ids [2, 32]: the first 64 tokens of the embedded corpus."""
    return tokenize_contexts(load_texts("embedded:kjv-pydoc"), smollm[1], context_length=32, max_tokens=64)


def tiny_cfg(**changes):
    return ActivationConfig(**{"max_tokens": 64, "heldout_tokens": 32, "context_length": 32, "batch_size": 1, **changes})


def test_store_holds_the_hook_output_in_token_order_with_heldout_rows_last(smollm, two_contexts, tmp_path):
    model, _ = smollm
    store = write_activations(tmp_path / "a.zarr", model, two_contexts, hook=HOOK, cfg=tiny_cfg(), attrs=SITE)
    assert store == open_store(tmp_path / "a.zarr")
    assert not (tmp_path / "a.zarr.tmp").exists()
    attrs = store.attrs
    assert {k: attrs[k] for k in ("model", "dataset", "hook", "n_tokens", "n_train", "n_heldout", "d_in", "context_length", "dtype")} == {
        "model": "embedded:smollm2-135m", "dataset": "embedded:kjv-pydoc", "hook": HOOK,
        "n_tokens": 64, "n_train": 32, "n_heldout": 32, "d_in": 576, "context_length": 32, "dtype": "float16",
    }
    assert attrs["tokens_per_second"] > 0 and attrs["torch"] == torch.__version__
    assert store.array.dtype == np.float16
    module = resolve_hook(model, HOOK)
    expected = [hooked_activations(model, module, two_contexts[i : i + 1])[0].numpy().astype(np.float16) for i in range(2)]
    # float16 survives the zarr round trip bit for bit.
    np.testing.assert_array_equal(store.array[:32], expected[0])
    np.testing.assert_array_equal(store.heldout(), expected[1].astype(np.float32))


def test_the_same_config_gives_the_same_bytes(smollm, two_contexts, tmp_path):
    model, _ = smollm
    stores = [write_activations(tmp_path / f"{run}.zarr", model, two_contexts, hook=HOOK, cfg=tiny_cfg(batch_size=2), attrs=SITE) for run in "ab"]
    files = [sorted(p.relative_to(s.path) for p in s.path.rglob("*") if p.is_file()) for s in stores]
    assert files[0] == files[1] and len(files[0]) > 2
    for rel in files[0]:
        a, b = (s.path / rel for s in stores)
        if rel == Path("zarr.json"):  # the group's attrs: only the measured speed may differ
            attrs = [json.loads(p.read_text())["attributes"] for p in (a, b)]
            for one in attrs:
                one.pop("tokens_per_second")
            assert attrs[0] == attrs[1]
        else:
            assert a.read_bytes() == b.read_bytes(), rel


def test_one_pass_for_several_hooks_gives_each_hook_the_bytes_of_its_own_pass(smollm, two_contexts, tmp_path):
    model, _ = smollm
    hooks = ["layers.6.mlp", "layers.2", "layers.6"]  # out of depth order; layers.6 contains layers.6.mlp
    multi = write_activations_multi({h: tmp_path / f"multi-{h}.zarr" for h in hooks}, model, two_contexts, cfg=tiny_cfg(batch_size=2), attrs=SITE)
    assert list(multi) == hooks
    for hook in hooks:
        alone = write_activations(tmp_path / f"alone-{hook}.zarr", model, two_contexts, hook=hook, cfg=tiny_cfg(batch_size=2), attrs=SITE)
        np.testing.assert_array_equal(multi[hook].array[:], alone.array[:])
        assert multi[hook].attrs["hook"] == hook and multi[hook].attrs["hooks_in_pass"] == hooks
    assert not np.array_equal(multi["layers.6"].array[:], multi["layers.6.mlp"].array[:])


def test_cache_activations_runs_a_local_model_on_the_embedded_corpus(smollm, tiny_model, tmp_path):
    _, tok = smollm
    tiny = LlamaForCausalLM.from_pretrained(tiny_model)
    cfg = ActivationConfig(max_tokens=300, heldout_tokens=70, context_length=32, batch_size=4)
    store = cache_activations(
        tmp_path / "acts.zarr", source=SiteSource(tiny_model, "embedded:kjv-pydoc"),
        hook="layers.1", cfg=cfg, log=logging.getLogger("test"),
    )
    # 300 tokens are 9 whole contexts; 70 held-out tokens round up to 3 contexts.
    assert (store.attrs["n_tokens"], store.n_train, store.n_heldout, store.d_in) == (288, 192, 96, 16)
    assert store.attrs["weights"] == tiny_model and store.attrs["model_dtype"] == "float32"
    ids = tokenize_contexts(load_texts("embedded:kjv-pydoc"), tok, context_length=32, max_tokens=300)
    expected = hooked_activations(tiny, tiny.model.layers[1], ids[-3:]).reshape(-1, 16).numpy().astype(np.float16)
    np.testing.assert_allclose(store.heldout(), expected.astype(np.float32), rtol=2e-3, atol=1e-4)
    with pytest.raises(ValueError, match="layers.9"):
        cache_activations(tmp_path / "bad.zarr", source=SiteSource(tiny_model, "embedded:kjv-pydoc"), hook="layers.9", cfg=cfg)
    assert not (tmp_path / "bad.zarr").exists()


def test_bad_activations_fail_naming_hook_and_batch():
    with pytest.raises(StoreError, match=r"'layers.6.mlp'.*batch 3"):
        store_rows(torch.tensor([[[1.0, float("nan")]]]), np.dtype("float16"), hook="layers.6.mlp", batch_index=3)
    with pytest.raises(StoreError, match=r"'layers.6'.*overflow float16 in batch 0.*float32"):
        store_rows(torch.tensor([[[1.0, 1e6]]]), np.dtype("float16"), hook="layers.6", batch_index=0)
    assert store_rows(torch.tensor([[[1.0, 1e6]]]), np.dtype("float32"), hook="layers.6", batch_index=0).shape == (1, 2)


@pytest.mark.parametrize(
    "changes, culprit",
    [
        ({"dtype": "bfloat16"}, "dtype"),
        ({"heldout_tokens": 64}, "heldout_tokens=64"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_tokens": 64.0}, "max_tokens"),
    ],
)
def test_bad_config_names_the_field(changes, culprit):
    with pytest.raises(ValueError, match=culprit):
        tiny_cfg(**changes)


def test_contexts_must_match_the_configured_length(smollm, two_contexts, tmp_path):
    with pytest.raises(ValueError, match=r"expected \[n_ctx, 64\]"):
        write_activations(tmp_path / "x.zarr", smollm[0], two_contexts, hook=HOOK, cfg=tiny_cfg(context_length=64, max_tokens=256), attrs=SITE)
