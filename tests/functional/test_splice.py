"""Splicing at a hook (saeseeds.functional.splice) and loss recovered (saeseeds.functional.loss) on a tiny random Llama."""

import contextlib

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from saeseeds.functional.loss import heldout_token_ids, keeping_first_position, loss_recovered, sae_splice, zero_splice
from saeseeds.sae.coder import SaeConfig, SparseCoder
from saeseeds.functional.splice import SplicedModel, spliced
from saeseeds.activations.store import StoreWriter

D = 16


@pytest.fixture(scope="module")
def tiny():
    """A 3-layer random Llama (d = 16, vocab 97), float32, eval mode."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=97, hidden_size=D, intermediate_size=32, num_hidden_layers=3,
                                         num_attention_heads=2, num_key_value_heads=2))
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 97, (3, 12), generator=torch.Generator().manual_seed(1))


def identity_sae(d: int) -> SparseCoder:
    """A real TopK SAE that reconstructs exactly: latents +e_i and -e_i, k = d (one of each pair is relu'd away)."""
    sae = SparseCoder(d, SaeConfig(num_latents=2 * d, k=d))
    eye = torch.eye(d)
    with torch.no_grad():
        sae.encoder.weight.copy_(torch.cat([eye, -eye]))
        sae.W_dec.copy_(torch.cat([eye, -eye]))
    return sae.eval()


def zero_sae(d: int) -> SparseCoder:
    sae = SparseCoder(d, SaeConfig(num_latents=2 * d, k=4))
    with torch.no_grad():
        sae.W_dec.zero_()
    return sae.eval()


@pytest.mark.parametrize("hook", ["layers.0.mlp", "layers.1.self_attn", "layers.1", "layers.2.mlp"])
def test_identity_splice_on_the_tail_gives_the_unhooked_logits_exactly(tiny, ids, hook):
    model = SplicedModel(tiny, hook)
    clean, prefix = model.clean(ids)
    with torch.inference_mode():
        unhooked = tiny(input_ids=ids, use_cache=False).logits
    assert torch.equal(clean, unhooked)
    assert torch.equal(model.tail(prefix, lambda x: x), unhooked)
    assert torch.equal(model.tail(prefix, None), unhooked)


def test_splicing_changes_only_the_hooked_modules_output(tiny, ids):
    """Every module that runs before the hook outputs what it does unhooked, the hooked module's output is
    the splice of its own, and the tail run from the cached prefix equals a whole spliced forward."""
    hook = "layers.1.mlp"
    model = SplicedModel(tiny, hook)

    def shift(x):
        return x + 0.5

    def run(splice):
        outputs, order = {}, []
        handles = []
        with (spliced(model.module, splice) if splice else contextlib.nullcontext()):  # registered before the recorders
            for name, mod in tiny.named_modules():
                def keep(m, a, out, name=name):
                    out = out[0] if isinstance(out, tuple) else out
                    if isinstance(out, torch.Tensor):
                        outputs[name] = out.clone()
                        order.append(name)
                handles.append(mod.register_forward_hook(keep))
            try:
                with torch.inference_mode():
                    logits = tiny(input_ids=ids, use_cache=False).logits
            finally:
                for h in handles:
                    h.remove()
        return logits, outputs, order

    plain_logits, plain, order = run(None)
    spliced_logits, hooked, _ = run(shift)
    before = order[: order.index(f"model.{hook}")]
    assert "model.layers.0" in before and "model.layers.1.self_attn" in before
    for name in before:
        assert torch.equal(plain[name], hooked[name]), name
    assert torch.equal(hooked[f"model.{hook}"], plain[f"model.{hook}"] + 0.5)
    assert not torch.allclose(spliced_logits, plain_logits)
    _, prefix = model.clean(ids)
    assert torch.allclose(model.tail(prefix, shift), spliced_logits, atol=1e-6)


def test_splice_of_the_wrong_shape_fails(tiny, ids):
    model = SplicedModel(tiny, "layers.0.mlp")
    _, prefix = model.clean(ids)
    with pytest.raises(ValueError, match="splice returned shape"):
        model.tail(prefix, lambda x: x[..., :4])


def test_hook_outside_the_blocks_is_refused(tiny):
    with pytest.raises(ValueError, match="not inside a transformer block"):
        SplicedModel(tiny, "embed_tokens")


def test_loss_recovered_is_one_for_an_identity_sae_and_zero_for_a_zero_sae(tiny, ids):
    table = loss_recovered(tiny, "layers.1.mlp", ids, {("id", 0): sae_splice(identity_sae(D)), ("zero", 1): sae_splice(zero_sae(D)), ("zero", 2): zero_splice},
                           batch_size=2).set_index("seed")
    assert table.loc[0, "loss_recovered"] == pytest.approx(1.0, abs=1e-5)
    assert table.loc[0, "kl_sae"] == pytest.approx(0.0, abs=1e-8)
    assert table.loc[0, "ce_sae"] == pytest.approx(table.loc[0, "ce_clean"], abs=1e-6)
    assert table.loc[1, "loss_recovered"] == pytest.approx(0.0, abs=1e-9)  # b_dec is zero: the SAE outputs zeros
    assert table.loc[2, "ce_sae"] == table.loc[2, "ce_zero"] and table.loc[2, "kl_sae"] == table.loc[2, "kl_zero"] > 0
    assert table["ce_zero"].iloc[0] != table["ce_clean"].iloc[0]
    assert (table["contexts"] == 3).all() and (table["tokens"] == 3 * 11).all()


def test_loss_recovered_does_not_depend_on_the_batch_size(tiny, ids):
    splices = {("zero", 0): sae_splice(zero_sae(D)), ("half", 1): lambda x: 0.5 * x}
    one = loss_recovered(tiny, "layers.0.mlp", ids, splices, batch_size=1)
    three = loss_recovered(tiny, "layers.0.mlp", ids, splices, batch_size=3)
    assert np.allclose(one.drop(columns=["sae", "seed"]).to_numpy(float), three.drop(columns=["sae", "seed"]).to_numpy(float), rtol=1e-6)
    assert 0 < one.loc[1, "loss_recovered"] < 1.5


def test_heldout_token_ids_are_the_contexts_behind_the_heldout_rows(tmp_path):
    writer = StoreWriter(tmp_path / "s.zarr", 5 * 4, 3, dtype="float32")
    writer.append(np.zeros((5 * 4, 3), dtype=np.float32))
    tokens = np.arange(20).reshape(5, 4)
    writer.add_token_ids(tokens)
    store = writer.finish({"model": "m", "revision": "main", "dataset": "d", "hook": "h", "n_train": 3 * 4, "n_heldout": 2 * 4})
    assert heldout_token_ids(store, 2).tolist() == tokens[3:].tolist()
    assert heldout_token_ids(store, 1).tolist() == tokens[3:4].tolist()
    with pytest.raises(ValueError, match="functional.contexts=3.*holds 2 held-out contexts"):
        heldout_token_ids(store, 3)


def test_keeping_the_first_position_leaves_it_as_the_model_computed_it(tiny, ids):
    model = SplicedModel(tiny, "layers.1.mlp")
    clean, prefix = model.clean(ids)
    kept = keeping_first_position(zero_splice)
    seen = {}

    def record(x):
        seen["in"] = x.clone()
        out = kept(x)
        seen["out"] = out.clone()
        return out

    logits = model.tail(prefix, record)
    assert torch.equal(seen["out"][:, 0], seen["in"][:, 0]) and (seen["out"][:, 1:] == 0).all()
    assert torch.equal(logits[:, 0], clean[:, 0])  # nothing before or at position 0 changed
    table = loss_recovered(tiny, "layers.1.mlp", ids, {("id", 0): sae_splice(identity_sae(D)), ("zero", 1): zero_splice},
                           keep_first_position=True).set_index("seed")
    assert table.loc[0, "loss_recovered"] == pytest.approx(1.0, abs=1e-5)
    assert table.loc[1, "loss_recovered"] == pytest.approx(0.0, abs=1e-9)  # zero-ablation keeps position 0 too
    full = loss_recovered(tiny, "layers.1.mlp", ids, {("zero", 1): zero_splice}).set_index("seed")
    assert table.loc[1, "ce_zero"] != full.loc[1, "ce_zero"]
