"""The substitution test through the model (saeseeds.functional.model_substitution) on a tiny random Llama."""

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from saeseeds.activations.caching import ActivationConfig, write_activations
from saeseeds.matching.match import match_dictionaries
from saeseeds.functional.model_substitution import MODEL_COLUMNS, firing_contexts, model_substitution, sample_latents, swap_splice
from saeseeds.sae.coder import SaeConfig, SparseCoder
from saeseeds.functional.substitution import substitution_table

D, N = 16, 32
HOOK = "layers.1.mlp"


def substitution_frame(n=100, firing_every=5):
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "latent": np.arange(n), "partner": rng.permutation(n), "enc_cos": rng.uniform(0, 1, n), "dec_cos": rng.uniform(0, 1, n),
        "shared": rng.uniform(0, 1, n) > 0.5, "firing_rows": np.where(np.arange(n) % firing_every == 0, 0, 7),
    })


@pytest.mark.parametrize("n_latents", [1, 4, 10])
def test_the_sample_is_stratified_by_matched_cosine_as_configured(n_latents):
    """One firing latent from each of n equal-count bins of matched decoder cosine; never a latent that does not fire."""
    table = substitution_frame()
    sample = sample_latents(table, n_latents, seed=3)
    assert len(sample) == n_latents and (sample["firing_rows"] > 0).all()
    firing = table[table["firing_rows"] > 0].sort_values(["dec_cos", "latent"])
    bins = np.array_split(firing["latent"].to_numpy(), n_latents)
    assert sorted(sum(([int(np.isin(b, sample["latent"]).sum())] for b in bins), [])) == [1] * n_latents
    assert sample_latents(table, n_latents, seed=3).equals(sample)  # the same seed draws the same sample
    assert len(sample_latents(table, None)) == len(firing)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(tiny Llama, store of its layers.1.mlp outputs with 6 held-out contexts, an exact SAE a, SAE b = a permuted)."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=97, hidden_size=D, intermediate_size=32, num_hidden_layers=3,
                                         num_attention_heads=2, num_key_value_heads=2, initializer_range=0.3)).eval().requires_grad_(False)
    ids = torch.randint(0, 97, (30, 12), generator=torch.Generator().manual_seed(1))
    cfg = ActivationConfig(max_tokens=30 * 12, heldout_tokens=6 * 12, context_length=12, batch_size=8, dtype="float32")
    store = write_activations(tmp_path_factory.mktemp("s") / "acts.zarr", model, ids, hook=HOOK, cfg=cfg,
                              attrs={"model": "tiny", "revision": "main", "dataset": "random", "hook": HOOK})
    a = SparseCoder(D, SaeConfig(num_latents=N, k=D), seed=0)  # exact: latents +e_i and -e_i, one of each pair relu'd away
    eye = torch.eye(D)
    with torch.no_grad():
        a.encoder.weight.copy_(torch.cat([eye, -eye]))
        a.W_dec.copy_(torch.cat([eye, -eye]))
    perm = np.random.default_rng(2).permutation(N)
    b = SparseCoder(D, SaeConfig(num_latents=N, k=D), seed=5)
    inverse = torch.as_tensor(np.argsort(perm))
    with torch.no_grad():
        b.encoder.weight.copy_(a.encoder.weight[inverse])
        b.encoder.bias.copy_(a.encoder.bias[inverse])
        b.W_dec.copy_(a.W_dec[inverse])
        b.b_dec.copy_(a.b_dec)
    return model, store, a.eval().requires_grad_(False), b.eval().requires_grad_(False), perm


def test_dropping_nothing_and_swapping_a_latent_for_its_identical_copy_change_nothing(site):
    model, store, a, b, perm = site
    x = torch.from_numpy(store.heldout()[:24]).view(2, 12, D)
    recon = swap_splice(a, b, None, None, 0.0)(x)
    expected = a.decode(*a.encode(x.reshape(-1, D))).view_as(x)
    assert torch.allclose(recon, expected, atol=1e-6)
    assert torch.allclose(swap_splice(a, b, 3, int(perm[3]), 1.0)(x), recon, atol=1e-6)
    assert not torch.allclose(swap_splice(a, b, 3, None, 0.0)(x), recon, atol=1e-4) or not (a.encode(x.reshape(-1, D))[1] == 3).any()


def test_through_the_model_a_permuted_copys_partner_scores_one_and_controls_less(site):
    model, store, a, b, perm = site
    table, _ = match_dictionaries(a.encoder.weight.numpy(), a.W_dec.numpy(), b.encoder.weight.numpy(), b.W_dec.numpy())
    subst = substitution_table(a, b, table, np.asarray(store.array[: store.n_train], np.float32), store.heldout())
    assert (subst["partner"].to_numpy() == perm).all()
    sample = sample_latents(subst, 3, seed=0)
    out = model_substitution(model, HOOK, store, a, b, sample, contexts_per_latent=2)
    assert list(out.columns) == MODEL_COLUMNS and len(out) == 3
    assert out["contexts"].between(1, 2).all()  # at most 2: fewer where the latent fires in fewer
    assert np.allclose(out["kl_partner"], out["kl_sae"], rtol=1e-4, atol=1e-9)
    assert np.allclose(out["score_partner"], 1.0, atol=1e-3)
    assert (out["kl_drop"] > out["kl_sae"]).all()
    assert (out["score_random"] < 0.99).all()


def test_firing_contexts_are_the_ones_with_the_largest_summed_activation(site):
    _, store, a, _, _ = site
    held = torch.from_numpy(store.heldout())
    acts, idx = a.encode(held)
    dense = torch.zeros(len(held), N).scatter_(1, idx, acts)
    per_ctx = dense.view(6, 12, N).sum(1)
    latent = int(per_ctx.sum(0).argmax())
    chosen = firing_contexts(a, store, np.array([latent]), 2)[latent]
    assert set(chosen) == set(torch.topk(per_ctx[:, latent], 2).indices.tolist())
