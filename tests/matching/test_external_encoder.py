"""External checkpoints' own encoders, read back from the files each real library writes: the latents saeseeds
says fire on a row are exactly those the library's own `encode` activates, for every layout and activation it reads;
plain files and unread classes give a reason instead."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from saeseeds.matching.checkpoints import read_checkpoint
from saeseeds.matching.external_encoder import Encoder, firing_frequency, read_encoder

D, N, K, ROWS = 16, 48, 4, 300


def rows(seed=0):
    return np.random.default_rng(seed).standard_normal((ROWS, D)).astype(np.float32)


def randomise(module, seed=1):
    """Every parameter and float buffer drawn at random (biases included), so no term of the encoder is zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in [*module.parameters(), *(b for b in module.buffers() if b.is_floating_point())]:
            tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.5)


def ours(path):
    found = read_checkpoint(path)
    encoder = read_encoder(found.folder, found.layout)
    assert isinstance(encoder, Encoder), encoder
    return encoder.active(rows())


def dictionary_learning_folder(path, ae, k=None):
    path.mkdir(parents=True)
    torch.save({name: v.cpu() for name, v in ae.state_dict().items()}, path / "ae.pt")
    trainer = {"dict_class": type(ae).__name__, "activation_dim": D, "dict_size": N, **({"k": k} if k else {})}
    (path / "config.json").write_text(json.dumps({"trainer": trainer}))


def test_sparsify_topk(tmp_path):
    from sparsify import SparseCoder, SparseCoderConfig

    sae = SparseCoder(D, SparseCoderConfig(num_latents=N, k=K), device="cpu")
    randomise(sae)
    sae.save_to_disk(tmp_path / "sp")
    out = sae.encode(torch.from_numpy(rows()))
    theirs = np.zeros((ROWS, N), dtype=bool)
    np.put_along_axis(theirs, out.top_indices.numpy(), out.top_acts.detach().numpy() > 0, axis=1)
    assert (ours(tmp_path / "sp") == theirs).all() and theirs.sum() > ROWS  # several latents per row fire


@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu"])
def test_saelens(tmp_path, arch):
    import sae_lens

    cls, cfg_cls = {"standard": ("StandardSAE", "StandardSAEConfig"), "topk": ("TopKSAE", "TopKSAEConfig"),
                    "jumprelu": ("JumpReLUSAE", "JumpReLUSAEConfig")}[arch]
    sae = getattr(sae_lens, cls)(getattr(sae_lens, cfg_cls)(d_in=D, d_sae=N, **({"k": K} if arch == "topk" else {})))
    randomise(sae)
    if arch == "jumprelu":
        with torch.no_grad():
            sae.threshold.copy_(sae.threshold.abs())  # JumpReLU thresholds are positive
    sae.save_model(tmp_path / arch)
    theirs = (sae.encode(torch.from_numpy(rows())) > 0).numpy()
    assert (ours(tmp_path / arch) == theirs).all() and 0 < theirs.mean() < 1


@pytest.mark.parametrize("cls", ["AutoEncoder", "AutoEncoderTopK", "BatchTopKSAE", "JumpReluAutoEncoder"])
def test_dictionary_learning(tmp_path, cls):
    from dictionary_learning import AutoEncoder, JumpReluAutoEncoder
    from dictionary_learning.trainers.batch_top_k import BatchTopKSAE
    from dictionary_learning.trainers.top_k import AutoEncoderTopK

    make = {"AutoEncoder": lambda: AutoEncoder(D, N), "AutoEncoderTopK": lambda: AutoEncoderTopK(D, N, K),
            "BatchTopKSAE": lambda: BatchTopKSAE(D, N, K), "JumpReluAutoEncoder": lambda: JumpReluAutoEncoder(D, N)}
    ae = make[cls]()
    randomise(ae)
    if cls == "BatchTopKSAE":
        with torch.no_grad():
            ae.threshold.fill_(0.3)  # what training leaves there (its inference threshold)
    dictionary_learning_folder(tmp_path / cls, ae, k=K if "TopK" in cls else None)
    theirs = (ae.encode(torch.from_numpy(rows())) > 0).numpy()
    assert (ours(tmp_path / cls) == theirs).all() and 0 < theirs.mean() < 1


def test_firing_frequency_is_the_fraction_of_rows_each_latent_fires_on():
    rng = np.random.default_rng(3)
    encoder = Encoder(rng.standard_normal((N, D)).astype(np.float32), rng.standard_normal(N).astype(np.float32),
                      rng.standard_normal(D).astype(np.float32), "topk", k=K)
    x = rows(4)
    np.testing.assert_array_equal(firing_frequency(encoder, x, batch_rows=7), encoder.active(x).mean(axis=0))
    assert encoder.active(x).sum(axis=1).max() <= K


def test_layouts_without_an_encoder_give_a_reason(tmp_path):
    rng = np.random.default_rng(5)
    enc, dec = rng.standard_normal((N, D)).astype(np.float32), rng.standard_normal((N, D)).astype(np.float32)
    save_file({"W_enc": np.ascontiguousarray(enc.T), "W_dec": dec}, str(tmp_path / "plain.safetensors"))
    assert "holds directions only" in read_encoder(tmp_path / "plain.safetensors", "plain")
    (tmp_path / "sl").mkdir()
    (tmp_path / "sl" / "cfg.json").write_text(json.dumps({"architecture": "gated", "d_in": D, "d_sae": N}))
    save_file({"W_enc": np.ascontiguousarray(enc.T), "W_dec": dec, "b_enc": np.zeros(N, np.float32),
               "b_dec": np.zeros(D, np.float32)}, str(tmp_path / "sl" / "sae_weights.safetensors"))
    assert "SAELens architecture 'gated' is not read" in read_encoder(tmp_path / "sl", "SAELens")
