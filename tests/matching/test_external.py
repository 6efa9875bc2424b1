"""Checkpoints written by the real libraries (sparsify, SAELens, dictionary_learning) and plain files:
each layout is detected and read, a permuted copy of a dictionary is 100% shared, and its partner ids
map back to the original ids; `saeseeds stability` writes the per-latent table by original id."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.numpy import save_file

from saeseeds.matching.checkpoints import CheckpointError, detect_layout, read_checkpoint
from saeseeds.cli import main as cli_main

D, N, K = 16, 48, 4


def perm_of(seed, n=N):
    return np.random.default_rng(seed).permutation(n)


def write_sparsify(path, perm=None, seed=0, n=N):
    """`SparseCoder.save_to_disk`, as sparsify's trainer calls it once per hookpoint."""
    from sparsify import SparseCoder, SparseCoderConfig

    torch.manual_seed(seed)
    sae = SparseCoder(D, SparseCoderConfig(num_latents=n, k=K), device="cpu")
    if perm is not None:
        p = torch.as_tensor(perm)
        with torch.no_grad():
            sae.encoder.weight.copy_(sae.encoder.weight[p])
            sae.encoder.bias.copy_(sae.encoder.bias[p])
            sae.W_dec.copy_(sae.W_dec[p])
    sae.save_to_disk(path)
    return sae.encoder.weight.detach().numpy().copy(), sae.W_dec.detach().numpy().copy()


def write_saelens(path, enc, dec):
    """A TopK SAE of sae_lens holding the given rows, saved with its own `save_model`."""
    from sae_lens import TopKSAE, TopKSAEConfig

    sae = TopKSAE(TopKSAEConfig(d_in=enc.shape[1], d_sae=enc.shape[0], k=K))
    with torch.no_grad():
        sae.W_enc.copy_(torch.as_tensor(enc.T))
        sae.W_dec.copy_(torch.as_tensor(dec))
    sae.save_model(path)


def write_dictionary_learning(path, enc, dec, topk=True):
    """AutoEncoderTopK / AutoEncoder state dict + config.json, as dictionary_learning's trainSAE writes them."""
    from dictionary_learning import AutoEncoder
    from dictionary_learning.trainers.top_k import AutoEncoderTopK

    n, d = enc.shape
    ae = AutoEncoderTopK(d, n, K) if topk else AutoEncoder(d, n)
    with torch.no_grad():
        ae.encoder.weight.copy_(torch.as_tensor(enc))
        ae.decoder.weight.copy_(torch.as_tensor(dec.T))
    path.mkdir(parents=True)
    torch.save({k: v.cpu() for k, v in ae.state_dict().items()}, path / "ae.pt")
    trainer = {"trainer_class": "TopKTrainer" if topk else "StandardTrainer",
               "dict_class": type(ae).__name__, "activation_dim": d, "dict_size": n, "k": K, "seed": 0}
    (path / "config.json").write_text(json.dumps({"trainer": trainer}, indent=4))


def test_each_layout_is_detected_and_read_with_the_latent_order_of_its_library(tmp_path):
    enc, dec = write_sparsify(tmp_path / "sp")
    write_saelens(tmp_path / "sl", enc, dec)
    write_dictionary_learning(tmp_path / "dl", enc, dec)
    write_dictionary_learning(tmp_path / "dl_relu", enc, dec, topk=False)
    save_file({"W_enc": np.ascontiguousarray(enc.T), "W_dec": dec}, str(tmp_path / "plain.safetensors"))
    np.savez(tmp_path / "plain.npz", W_enc=enc, W_dec=dec)  # [n, d] orientation is read too
    expected = {"sp": "sparsify", "sl": "SAELens", "dl": "dictionary_learning", "dl_relu": "dictionary_learning",
                "plain.safetensors": "plain", "plain.npz": "plain"}
    for name, layout in expected.items():
        got = read_checkpoint(tmp_path / name)
        assert got.layout == layout, name
        np.testing.assert_allclose(got.enc, enc, rtol=0, atol=0, err_msg=name)
        np.testing.assert_allclose(got.dec, dec, rtol=0, atol=0, err_msg=name)


def test_sparsify_run_folders_with_one_or_several_hookpoints(tmp_path):
    write_sparsify(tmp_path / "one" / "layers.3.mlp")
    assert detect_layout(tmp_path / "one") == ("sparsify", tmp_path / "one" / "layers.3.mlp")
    write_sparsify(tmp_path / "many" / "layers.0")
    write_sparsify(tmp_path / "many" / "layers.1", seed=1)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(tmp_path / "many")
    assert "holds 2 checkpoints in subfolders (layers.0, layers.1)" in str(err.value) and "\n" not in str(err.value)
    assert read_checkpoint(tmp_path / "many" / "layers.1").layout == "sparsify"


def test_saelens_sparsity_file_gives_the_firing_frequency(tmp_path):
    enc, dec = write_sparsify(tmp_path / "sp")
    write_saelens(tmp_path / "sl", enc, dec)
    freq = np.linspace(1e-4, 0.5, N).astype(np.float32)
    save_file({"log_feature_sparsity": np.log10(freq)}, str(tmp_path / "sl" / "sparsity.safetensors"))
    np.testing.assert_allclose(read_checkpoint(tmp_path / "sl").firing, freq, rtol=1e-5)


@pytest.mark.parametrize("writer", ["sparsify", "saelens", "dictionary_learning"])
def test_permuted_copy_is_fully_shared_and_partner_ids_map_back(tmp_path, writer, capsys):
    perm = perm_of(3)
    enc, dec = write_sparsify(tmp_path / "sp0")
    if writer == "sparsify":
        write_sparsify(tmp_path / "copy", perm=perm)
    elif writer == "saelens":
        write_saelens(tmp_path / "copy", enc[perm], dec[perm])
    else:
        write_dictionary_learning(tmp_path / "copy", enc[perm], dec[perm])
    out = tmp_path / "stab.parquet"
    assert cli_main(["stability", str(tmp_path / "sp0"), str(tmp_path / "copy"), "-o", str(out)]) == 0
    table = pd.read_parquet(out)
    assert list(table.columns[:5]) == ["checkpoint", "label", "latent", "n_shared", "firing_frequency"]
    assert (table["n_shared"] == 1).all()
    original = table[table["checkpoint"] == str(tmp_path / "sp0")]
    copy = table[table["checkpoint"] == str(tmp_path / "copy")]
    # Latent i of the copy is latent perm[i] of the original, and each side names the other's id.
    np.testing.assert_array_equal(copy["partner_0"].to_numpy(), perm)
    np.testing.assert_array_equal(perm[original["partner_1"].to_numpy()], original["latent"].to_numpy())
    np.testing.assert_allclose(copy["enc_cos_0"], 1.0, atol=1e-5)
    sources = json.loads((tmp_path / "stab.sources.json").read_text())
    assert [c["layout"] for c in sources["checkpoints"]] == ["sparsify", {"sparsify": "sparsify", "saelens": "SAELens"}.get(writer, "dictionary_learning")]
    assert "96 latents of 2 checkpoints; 96 of them shared with every other checkpoint" in capsys.readouterr().out


def test_stability_of_three_checkpoints_of_unequal_sizes_by_original_id(tmp_path):
    """48 latents, a shuffled copy of them, and a shuffled 32-latent subset written by dictionary_learning."""
    enc, dec = write_sparsify(tmp_path / "a")
    p = perm_of(5)
    write_saelens(tmp_path / "b", enc[p], dec[p])
    sub = perm_of(6)[:32]
    write_dictionary_learning(tmp_path / "c", enc[sub], dec[sub])
    out = tmp_path / "t.csv"
    assert cli_main(["stability", str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c"), "-o", str(out)]) == 0
    table = pd.read_csv(out)
    assert len(table) == 48 + 48 + 32
    a = table[table["label"] == 0].set_index("latent")
    in_sub = np.isin(np.arange(48), sub)
    np.testing.assert_array_equal(a["n_shared"].to_numpy(), np.where(in_sub, 2, 1))
    c = table[table["label"] == 2]
    assert (c["n_shared"] == 2).all()
    np.testing.assert_array_equal(c["partner_0"].to_numpy(), sub)  # c's latent i is a's latent sub[i]
    np.testing.assert_array_equal(p[c["partner_1"].to_numpy()], sub)  # and b's latent j is a's latent p[j]
    assert (a.loc[~in_sub, "partner_2"] == -1).all() and a.loc[~in_sub, "enc_cos_2"].isna().all()


def test_exported_shuffled_copies_give_the_same_table_after_mapping_ids_back(tmp_path):
    """The README's check at unit scale: export to SAELens and dictionary_learning with shuffled latents."""
    from saeseeds.matching.export import export_checkpoint

    for s in range(3):
        write_sparsify(tmp_path / f"seed{s}", seed=s)
    direct = tmp_path / "direct.parquet"
    assert cli_main(["stability", *(str(tmp_path / f"seed{s}") for s in range(3)), "-o", str(direct)]) == 0
    perms = [export_checkpoint(tmp_path / f"seed{s}", tmp_path / "ex" / f"seed{s}", ("SAELens", "dictionary_learning")[s % 2], shuffle_seed=s)
             for s in range(3)]
    out = tmp_path / "ex.parquet"
    assert cli_main(["stability", *(str(tmp_path / "ex" / f"seed{s}") for s in range(3)), "-o", str(out)]) == 0
    a, b = pd.read_parquet(direct), pd.read_parquet(out)
    for s in range(3):
        ra = a[a["label"] == str(s)].reset_index(drop=True)
        rb = b[b["label"] == str(s)].copy()
        rb["latent"] = perms[s][rb["latent"].to_numpy()]  # exported latent i is original perms[s][i]
        for o in range(3):
            if o != s:
                rb[f"partner_{o}"] = perms[o][rb[f"partner_{o}"].to_numpy()]
        rb = rb.sort_values("latent").reset_index(drop=True)
        assert (ra["n_shared"] == rb["n_shared"]).all()
        for o in range(3):
            if o != s:
                assert (ra[f"partner_{o}"] == rb[f"partner_{o}"]).all()
                np.testing.assert_allclose(ra[f"enc_cos_{o}"], rb[f"enc_cos_{o}"], atol=1e-6)


def test_external_set_config_is_checked_before_any_job(tmp_path):
    """Globs must match, a set needs 2 checkpoints; a recipe key beside `checkpoints` is refused; no site is fine."""
    import yaml

    from saeseeds.config.study import NO_SITE, ConfigError, external_checkpoints, sae_seeds, site_saes
    from saeseeds.config.validate import validate_config

    for s in range(3):
        write_sparsify(tmp_path / "ck" / f"seed{s}", seed=s)
    config = yaml.safe_load(open("config/smoke.yaml"))
    config["saes"]["theirs"] = {"checkpoints": str(tmp_path / "ck" / "seed*")}
    config["sites"][0]["saes"].append("theirs")
    validate_config(config)
    assert external_checkpoints(config, "theirs") == [str(tmp_path / "ck" / f"seed{s}") for s in range(3)]
    assert sae_seeds(config, "theirs") == [0, 1, 2]
    bad = {
        "matches no checkpoint": {"checkpoints": str(tmp_path / "none*")},
        "gives 1 checkpoint": {"checkpoints": str(tmp_path / "ck" / "seed0*")},
    }
    for problem, entry in bad.items():
        config["saes"]["theirs"] = entry
        with pytest.raises(Exception, match=problem):
            validate_config(config)
    config["saes"]["theirs"] = {"checkpoints": str(tmp_path / "ck" / "seed*"), "arch": "topk"}
    with pytest.raises(ConfigError, match="saes"):
        validate_config(config)
    config["saes"]["theirs"] = {"checkpoints": str(tmp_path / "ck" / "seed*")}
    config["sites"][0]["saes"].remove("theirs")  # under no site: analysed at NO_SITE, everything that needs no activations
    validate_config(config)
    assert (NO_SITE, "theirs") in site_saes(config) and NO_SITE.path == "external/none/none"
    for section in ("autointerp", "functional"):
        broken = {**config, section: {**config[section], "saes": ["theirs"]}}
        with pytest.raises(ConfigError, match=f"config key '{section}.saes': 'theirs' is an external set"):
            validate_config(broken)
