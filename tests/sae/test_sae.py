"""Tests of the SAE model: TopK maths, decoder normalisation, checkpoints in sparsify's layout."""

import json

import pytest
import torch

from saeseeds.sae.coder import SaeConfig, SaeConfigError, SparseCoder

D, N, K = 16, 48, 4


def make(seed=0, **kw):
    return SparseCoder(D, SaeConfig(num_latents=N, k=K, **kw), seed=seed)


def test_topk_forward_backward_shapes():
    sae = make()
    x = torch.randn(10, D, generator=torch.Generator().manual_seed(1))
    out = sae(x)
    assert out.sae_out.shape == (10, D)
    assert out.latent_acts.shape == (10, K) and out.latent_indices.shape == (10, K)
    assert (out.latent_acts >= 0).all()
    out.fvu.backward()
    shapes = {name: p.grad.shape for name, p in sae.named_parameters()}
    assert shapes == {"encoder.weight": (N, D), "encoder.bias": (N,), "W_dec": (N, D), "b_dec": (D,)}


def test_encode_is_topk_of_relu_preacts_and_decode_matches_dense():
    sae = make()
    with torch.no_grad():
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(2))
    x = torch.randn(7, D, generator=torch.Generator().manual_seed(3))
    acts, idx = sae.encode(x)
    pre = torch.relu((x - sae.b_dec) @ sae.encoder.weight.T + sae.encoder.bias)
    ref_vals, _ = pre.topk(K, dim=-1)
    assert torch.allclose(acts.sort(-1, descending=True).values, ref_vals)
    dense = torch.zeros(7, N).scatter(1, idx, acts)
    assert torch.allclose(sae.decode(acts, idx), dense @ sae.W_dec + sae.b_dec, atol=1e-6)


def test_decoder_rows_unit_norm_at_init_and_after_a_step():
    sae = make()
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(N), atol=1e-6)
    # the decoder starts as the encoder's rows, unit-normed (sparsify's init)
    w = sae.encoder.weight
    assert torch.allclose(sae.W_dec, w / w.norm(dim=1, keepdim=True), atol=1e-6)
    opt = torch.optim.Adam(sae.parameters(), lr=0.1)
    sae(torch.randn(32, D)).fvu.backward()
    sae.remove_gradient_parallel_to_decoder_directions()
    opt.step()
    assert not torch.allclose(sae.W_dec.norm(dim=1), torch.ones(N), atol=1e-3)
    sae.set_decoder_norm_to_unit_norm()
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(N), atol=1e-6)


def test_parallel_gradient_removal_leaves_only_the_tangent_component():
    sae = make()
    sae.W_dec.grad = torch.randn(N, D, generator=torch.Generator().manual_seed(4))
    before = sae.W_dec.grad.clone()
    sae.remove_gradient_parallel_to_decoder_directions()
    g, w = sae.W_dec.grad, sae.W_dec.detach()
    assert torch.allclose((g * w).sum(1), torch.zeros(N), atol=1e-5)
    # what was removed lies along the rows
    removed = before - g
    assert torch.allclose(removed, (before * w).sum(1, keepdim=True) * w, atol=1e-5)


def test_init_depends_only_on_seed_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, b, c = make(seed=5), make(seed=5), make(seed=6)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.encoder.weight, b.encoder.weight)
    assert not torch.equal(a.encoder.weight, c.encoder.weight)


def test_save_load_round_trip_in_sparsify_layout(tmp_path):
    sae = make(seed=3)
    with torch.no_grad():
        sae.encoder.bias.uniform_(-0.1, 0.1)
        sae.b_dec.uniform_(-1, 1)
    sae.save_to_disk(tmp_path / "ckpt")
    cfg = json.loads((tmp_path / "ckpt" / "cfg.json").read_text())
    assert list(cfg) == ["activation", "expansion_factor", "normalize_decoder", "num_latents", "k", "multi_topk", "skip_connection", "transcode", "d_in"]
    assert (cfg["num_latents"], cfg["k"], cfg["d_in"], cfg["activation"]) == (N, K, D, "topk")
    back = SparseCoder.load_from_disk(tmp_path / "ckpt")
    for (name, p), (name2, q) in zip(sae.named_parameters(), back.named_parameters()):
        assert name == name2 and torch.equal(p, q)
    x = torch.randn(5, D)
    assert torch.equal(sae(x).sae_out, back(x).sae_out)


def _import_sparsify():
    """Returns sparsify; skips (saying why) only when it cannot be imported. run.sh installs eai-sparsify 1.3.3
    with --no-deps (its declared deps would pull a CUDA torch), so in CI this test runs."""
    try:
        import sparsify
    except ImportError as err:
        pytest.skip(f"eai-sparsify is not importable ({err}); ./run.sh test installs eai-sparsify==1.3.3 --no-deps")
    return sparsify


def _dense_codes(acts, idx, n):
    """Returns the [B, n] latent vector of top-k (acts, indices): equal iff the same latents fire with the same values."""
    return torch.zeros(len(acts), n, dtype=acts.dtype).scatter_(1, idx, acts)


def test_sparsify_loads_a_trained_checkpoint_with_same_outputs(tmp_path):
    """The round trip: saeseeds trains and writes, sparsify's own loader reads, both give the same latents and
    reconstructions on the same inputs (to float32 rounding: the two sum the k decoder rows in different orders)."""
    import numpy as np
    from importlib.metadata import version

    from saeseeds.activations.store import write_store
    from saeseeds.sae.train import TrainConfig, train_sae

    sparsify = _import_sparsify()
    assert version("eai-sparsify") == "1.3.3"
    rng = np.random.default_rng(0)
    rows = (rng.exponential(1.0, (3000, 64)) * (rng.random((3000, 64)) < 0.05)) @ rng.standard_normal((64, D))
    store = write_store(tmp_path / "s.zarr", rows.astype(np.float32), n_heldout=500, attrs={})
    train_sae(store.path, tmp_path / "ckpt", SaeConfig(num_latents=N, k=K), TrainConfig(batch_size=250, max_tokens=2500 * 4, warmup_steps=4, lr=3e-3), seed=3, data_seed=1)
    ours = SparseCoder.load_from_disk(tmp_path / "ckpt")
    theirs = sparsify.SparseCoder.load_from_disk(tmp_path / "ckpt")
    assert (theirs.cfg.k, theirs.num_latents, theirs.d_in) == (K, N, D)
    for name, p in ours.state_tensors().items():
        assert torch.equal(theirs.state_dict()[name], p), name
    x = torch.from_numpy(store.heldout())
    with torch.no_grad():
        mine, other = ours(x), theirs(x)
    codes_ours = _dense_codes(mine.latent_acts, mine.latent_indices, N)
    codes_theirs = _dense_codes(other.latent_acts, other.latent_indices, N)
    assert int((codes_ours > 0).sum()) > 0.9 * K * len(x)  # a trained SAE: almost every slot fires
    assert torch.equal(codes_ours > 0, codes_theirs > 0)  # the same latents fire on every token
    assert torch.allclose(codes_ours, codes_theirs, rtol=0, atol=1e-5)
    scale = float(x.abs().max())
    assert torch.allclose(mine.sae_out, other.sae_out, rtol=0, atol=1e-5 * scale)
    assert float(mine.fvu) == pytest.approx(float(other.fvu), abs=1e-5)
    assert float(mine.fvu) < 0.5


def test_loads_in_sparsify_with_same_outputs(tmp_path):
    sparsify = _import_sparsify()
    sae = make(seed=3)
    with torch.no_grad():
        sae.b_dec.uniform_(-1, 1)
    sae.save_to_disk(tmp_path / "ckpt")
    theirs = sparsify.SparseCoder.load_from_disk(tmp_path / "ckpt")
    x = torch.randn(9, D)
    ours_out, their_out = sae(x), theirs(x)
    assert torch.allclose(ours_out.sae_out, their_out.sae_out, atol=1e-5)
    assert torch.allclose(ours_out.fvu, their_out.fvu, atol=1e-6)


def test_checkpoint_with_wrong_tensor_shape_is_rejected(tmp_path):
    make().save_to_disk(tmp_path / "a")
    cfg_path = tmp_path / "a" / "cfg.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["num_latents"] = N + 1
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(SaeConfigError, match=r"tensor \S+ has shape"):
        SparseCoder.load_from_disk(tmp_path / "a")


@pytest.mark.parametrize(
    "kw, culprit",
    [({"num_latents": 8, "k": 9}, "k=9"), ({"num_latents": 0}, "num_latents"), ({"num_latents": 8, "arch": "nope"}, "arch"), ({"num_latents": 8, "k": 2.5}, "k=2.5")],
)
def test_bad_config_names_the_key(kw, culprit):
    with pytest.raises(SaeConfigError, match=culprit):
        SaeConfig(**kw)


@pytest.mark.parametrize("arch, extra", [("batchtopk", {"threshold"}), ("jumprelu", {"threshold"}), ("relu", set()), ("gated", {"r_mag", "b_mag"})])
def test_other_archs_keep_sparsify_tensors_and_describe_themselves(tmp_path, arch, extra):
    from safetensors.torch import load_file

    sae = make(seed=1, arch=arch)
    sae.save_to_disk(tmp_path / arch)
    cfg = json.loads((tmp_path / arch / "cfg.json").read_text())
    assert cfg["activation"] == arch and cfg["arch"] == arch  # sparsify refuses it rather than running it as TopK
    names = set(load_file(str(tmp_path / arch / "sae.safetensors")))
    assert names == {"encoder.weight", "encoder.bias", "W_dec", "b_dec"} | extra
    back = SparseCoder.load_from_disk(tmp_path / arch)
    assert back.cfg == sae.cfg
    x = torch.randn(6, D)
    assert torch.equal(sae.eval()(x).sae_out, back.eval()(x).sae_out)
