"""Bad input fails fast, in one line that names the culprit: config keys and values, checkpoint files,
corpora and models. Nothing here may reach a traceback deep inside a library."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import save_file

from saeseeds.config import study
from saeseeds.matching.checkpoints import CheckpointError, load_dictionaries
from saeseeds.cli import main as cli_main
from saeseeds.activations.corpus import tokenize_contexts
from saeseeds.activations.layouts import KNOWN_MODELS, LAYOUTS, hook_problem
from saeseeds.activations.models import load_model, resolve_hook
from saeseeds.config.validate import validate_config

ROOT = Path(__file__).resolve().parents[2]


def smoke():
    return yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())


def setter(*path_and_value):
    *path, value = path_and_value

    def edit(config):
        target = config
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return edit


def deleter(*path):
    def edit(config):
        target = config
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return edit


def every_set_on_its_own_seeds(config):
    """No SAE set trained on the study's `seeds` (the issue's case: Figures 1-3 would have nothing to draw)."""
    for entry in config["saes"].values():
        if "checkpoints" not in entry:
            entry["seeds"] = [0, 1]
    config["seeds"] = [0, 1, 2]


# (edit of config/smoke.yaml, the key the message must name, the bad value it must show)
BAD_CONFIGS = {
    "no set on the study's seeds": (every_set_on_its_own_seeds, "seeds", "[0, 1, 2]"),
    "threshold above 1": (setter("match", "threshold", 1.5), "match.threshold", "1.5"),
    "threshold 0": (setter("match", "threshold", 0), "match.threshold", "0"),
    "threshold not a number": (setter("match", "threshold", "high"), "match.threshold", "'high'"),
    "unknown definition": (setter("match", "definition", "loose"), "match.definition", "'loose'"),
    "unknown match device": (setter("match", "device", "tpu"), "match.device", "'tpu'"),
    "one seed": (setter("seeds", [0]), "seeds", "[0]"),
    "repeated seed": (setter("seeds", [0, 1, 1]), "seeds", "[0, 1, 1]"),
    "fractional seed": (setter("seeds", [0, 1.5]), "seeds.1", "1.5"),
    "negative data seed": (setter("data_seed", -1), "data_seed", "-1"),
    "no tokens": (setter("activations", "max_tokens", 0), "activations.max_tokens", "0"),
    "store dtype": (setter("activations", "dtype", "int8"), "activations.dtype", "'int8'"),
    "fractional context": (setter("activations", "context_length", 2.5), "activations.context_length", "2.5"),
    "gpu is not a device": (setter("train", "device", "gpu"), "train.device", "'gpu'"),
    "zero threads": (setter("train", "threads", 0), "train.threads", "0"),
    "unknown architecture": (setter("saes", "topk-256", "arch", "sigmoid"), "saes.topk-256.arch", "'sigmoid'"),
    "negative latents": (setter("saes", "topk-256", "num_latents", -4), "saes.topk-256.num_latents", "-4"),
    "negative lr": (setter("saes", "topk-256", "lr", -1e-3), "saes.topk-256.lr", "-0.001"),
    "unknown optimizer": (setter("saes", "topk-256", "optimizer", "sgd"), "saes.topk-256.optimizer", "'sgd'"),
    "misspelt SAE key": (setter("saes", "topk-256", "lerning_rate", 0.1), "saes.topk-256.lerning_rate", "lerning_rate"),
    "misspelt top-level key": (setter("sede", 3), "sede", "sede"),
    "model dtype": (setter("models", "smollm2-135m", "dtype", "int4"), "models.smollm2-135m.dtype", "'int4'"),
    "empty model source": (setter("models", "smollm2-135m", "source", ""), "models.smollm2-135m.source", "''"),
    "missing datasets": (deleter("datasets"), "datasets", "required"),
    "missing arch": (deleter("saes", "topk-256", "arch"), "saes.topk-256.arch", "required"),
    "no hooks": (setter("sites", 0, "hooks", []), "sites.0.hooks", "[]"),
    "undefined model": (lambda c: c["sites"][0].update(model="gpt9"), "sites.0.model", "'gpt9'"),
    "undefined dataset": (lambda c: c["sites"][0].update(dataset="nope"), "sites.0.dataset", "'nope'"),
    "undefined SAE at a site": (lambda c: c["sites"][0].update(saes=["missing"]), "sites.0.saes", "'missing'"),
    "k above latents": (setter("saes", "topk-256", "k", 1000), "saes.topk-256.k", "k=1000"),
    "all tokens held out": (setter("activations", "heldout_tokens", 10**9), "activations.heldout_tokens", "1000000000"),
    "less than one context": (setter("activations", "context_length", 100_000), "activations.max_tokens", "12288"),
    "batch above SAE tokens": (setter("saes", "topk-256", "batch_size", 10**6), "saes.topk-256.batch_size", "1000000"),
    "batch above the site's training tokens": (
        lambda c: (c["saes"]["topk-256"].pop("max_tokens"), c["saes"]["topk-256"].update(batch_size=12_000)),
        "saes.topk-256.batch_size", "12000",
    ),
    "warmup longer than training": (setter("saes", "topk-256", "warmup_steps", 50), "saes.topk-256.warmup_steps", "50"),
    "hook past the last layer": (setter("sites", 0, "hooks", ["layers.30.mlp"]), "sites.0.hooks", "'layers.30.mlp'"),
    "GPT-2 hook on a Llama": (setter("sites", 0, "hooks", ["h.2.mlp"]), "sites.0.hooks", "'h.2.mlp'"),
    "misspelt hook child": (setter("sites", 0, "hooks", ["layers.2.mpl"]), "sites.0.hooks", "'layers.2.mpl'"),
    "variant with one seed": (setter("saes", "topk-128", "seeds", [0]), "saes.topk-128.seeds", "[0]"),
    "undefined figure baseline": (lambda c: c.update(figures={"baseline": "nope"}), "figures.baseline", "'nope'"),
    "synthetic block on a real model": (
        setter("models", "smollm2-135m", "synthetic", {"d": 8, "n_true": 16, "mean_active": 2}),
        "models.smollm2-135m.synthetic", "'embedded:smollm2-135m'",
    ),
    "trainer key the trainer rejects": (setter("saes", "topk-256", "grad_clip", 0), "saes.topk-256.grad_clip", "0"),
}


def test_the_table_has_at_least_25_distinct_bad_configs():
    assert len(BAD_CONFIGS) >= 25
    assert len({key for _, key, _ in BAD_CONFIGS.values()}) >= 25


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_fails_naming_key_and_value(case):
    edit, key, value = BAD_CONFIGS[case]
    config = smoke()
    edit(config)
    with pytest.raises(study.ConfigError) as err:
        validate_config(config)
    message = str(err.value)
    assert f"config key '{key}'" in message, message
    assert value in message, message


def test_every_schema_problem_is_listed_not_only_the_first():
    config = smoke()
    config["match"]["threshold"] = 2
    config["seeds"] = [0]
    with pytest.raises(study.ConfigError) as err:
        study.validate_schema(config)
    assert "'match.threshold'" in str(err.value) and "'seeds'" in str(err.value)


def test_shipped_configs_pass_every_check():
    for name in ("config.yaml", "smoke.yaml", "paper.yaml", "converged.yaml"):
        validate_config(yaml.safe_load((ROOT / "config" / name).read_text()))


def snakemake_dry_run(workdir, configfile):
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--dry-run", "--configfile", configfile]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "case", ["threshold above 1", "k above latents", "hook past the last layer", "misspelt SAE key"]
)
def test_snakemake_refuses_a_bad_config_before_any_job(tmp_path, case):
    for name in ("workflow", "config"):
        shutil.copytree(ROOT / name, tmp_path / name)
    edit, key, value = BAD_CONFIGS[case]
    config = smoke()
    edit(config)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    proc = snakemake_dry_run(tmp_path, "bad.yaml")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"config key '{key}'" in out and value in out, out[-3000:]
    assert "Job stats" not in out and "rule activations" not in out
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()
    assert time.perf_counter() - start < 120


# -- checkpoints given to `saeseeds match` ------------------------------------------------------------

N, D = 12, 5


def sparsify_ckpt(path, enc=None, dec=None, cfg=None, name="sae.safetensors"):
    rng = np.random.default_rng(0)
    enc = rng.standard_normal((N, D)).astype(np.float32) if enc is None else enc
    dec = rng.standard_normal((N, D)).astype(np.float32) if dec is None else dec
    path.mkdir(parents=True)
    (path / "cfg.json").write_text(json.dumps(cfg if cfg is not None else {"num_latents": len(enc), "d_in": enc.shape[1], "k": 4}))
    tensors = {"encoder.weight": enc, "encoder.bias": np.zeros(len(enc), np.float32), "W_dec": dec, "b_dec": np.zeros(enc.shape[1], np.float32)}
    save_file(tensors, str(path / name))
    return path


def saelens_ckpt(path, name="sae_weights.safetensors"):
    rng = np.random.default_rng(1)
    path.mkdir(parents=True)
    (path / "cfg.json").write_text(json.dumps({"d_in": D, "d_sae": N}))
    save_file({"W_enc": rng.standard_normal((D, N)).astype(np.float32), "W_dec": rng.standard_normal((N, D)).astype(np.float32)}, str(path / name))
    return path


def with_value(row, col, value):
    w = np.random.default_rng(2).standard_normal((N, D)).astype(np.float32)
    w[row, col] = value
    return w


def zero_rows(*rows):
    w = np.random.default_rng(3).standard_normal((N, D)).astype(np.float32)
    w[list(rows)] = 0
    return w


def truncated(path):
    sparsify_ckpt(path)
    data = (path / "sae.safetensors").read_bytes()
    (path / "sae.safetensors").write_bytes(data[: len(data) // 2])
    return path


def no_cfg(path):
    sparsify_ckpt(path)
    (path / "cfg.json").unlink()
    return path


def no_weights(path):
    path.mkdir()
    (path / "cfg.json").write_text("{}")
    return path


BAD_CHECKPOINTS = {
    "missing folder": (lambda p: p, "not a checkpoint folder"),
    "missing cfg.json": (no_cfg, "cfg.json missing"),
    "no weights file": (no_weights, "neither sae.safetensors (sparsify) nor sae_weights.safetensors (SAELens)"),
    "truncated weights": (truncated, "sae.safetensors: not a readable safetensors file"),
    "encoder and decoder shapes differ": (
        lambda p: sparsify_ckpt(p, dec=np.ones((N, D + 1), np.float32)), "but 'W_dec' has shape [12, 6]"),
    "NaN weight": (lambda p: sparsify_ckpt(p, enc=with_value(3, 1, np.nan)), "'encoder.weight' has non-finite values (first at row/col [3, 1])"),
    "Inf weight": (lambda p: sparsify_ckpt(p, dec=with_value(7, 0, np.inf)), "'W_dec' has non-finite values (first at row/col [7, 0])"),
    "zero-norm rows": (lambda p: sparsify_ckpt(p, dec=zero_rows(2, 9)), "'W_dec' has 2 zero-norm rows (latents [2, 9])"),
    "SAELens tensors under the sparsify name": (lambda p: saelens_ckpt(p, name="sae.safetensors"), "holds SAELens tensors ('W_enc') under the file name sae.safetensors"),
    "sparsify tensors under the SAELens name": (lambda p: sparsify_ckpt(p, name="sae_weights.safetensors"), "holds sparsify tensors ('encoder.weight') under the file name sae_weights.safetensors"),
    "cfg.json contradicts the tensors": (lambda p: sparsify_ckpt(p, cfg={"num_latents": 64, "d_in": D}), "cfg.json: num_latents=64 but the tensors have 12"),
    "cfg.json not JSON": (lambda p: (sparsify_ckpt(p), (p / "cfg.json").write_text("{num_latents: 12"))[0], "cfg.json: not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD_CHECKPOINTS))
def test_bad_checkpoint_fails_in_one_line_naming_file_and_problem(tmp_path, capsys, case):
    make, problem = BAD_CHECKPOINTS[case]
    bad = make(tmp_path / "bad")
    good = sparsify_ckpt(tmp_path / "good")
    with pytest.raises(CheckpointError) as err:
        load_dictionaries(bad)
    assert str(tmp_path / "bad") in str(err.value) and problem in str(err.value)
    assert cli_main(["match", str(good), str(bad), "-o", str(tmp_path / "m.parquet")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("saeseeds match: error: ") and problem in lines[0], lines
    assert not (tmp_path / "m.parquet").exists()


def test_match_names_a_d_in_mismatch_between_the_two_checkpoints(tmp_path, capsys):
    a = sparsify_ckpt(tmp_path / "a")
    b = sparsify_ckpt(tmp_path / "b", enc=np.ones((N, 7), np.float32), dec=np.ones((N, 7), np.float32))
    assert cli_main(["match", str(a), str(b), "-o", str(tmp_path / "m.parquet")]) == 2
    line = capsys.readouterr().err.strip()
    assert f"{a} has d_in=5 but {b} has d_in=7" in line and "\n" not in line


def test_zero_rows_are_matched_when_explicitly_allowed(tmp_path, capsys):
    a = sparsify_ckpt(tmp_path / "a", dec=zero_rows(4))
    assert cli_main(["match", str(a), str(a), "-o", str(tmp_path / "m.parquet"), "--allow-zero-rows"]) == 0
    assert (tmp_path / "m.parquet").exists()


def test_a_saelens_checkpoint_matches_a_sparsify_one(tmp_path):
    enc, dec = load_dictionaries(saelens_ckpt(tmp_path / "sl"))
    assert enc.shape == dec.shape == (N, D)
    assert cli_main(["match", str(tmp_path / "sl"), str(sparsify_ckpt(tmp_path / "sp")), "-o", str(tmp_path / "m.parquet")]) == 0


# -- corpora and models ---------------------------------------------------------------------------------


def test_empty_corpus_is_named(smollm):
    _, tok = smollm
    with pytest.raises(ValueError, match=r"corpus is empty: no documents to tokenise \(needed max_tokens=1024\)"):
        tokenize_contexts([], tok, context_length=64, max_tokens=1024)


def test_corpus_shorter_than_the_token_budget_is_named(smollm):
    _, tok = smollm
    with pytest.raises(ValueError, match=r"corpus too small: \d+ tokens .* for max_tokens=640 \(10 contexts of 64\)"):
        tokenize_contexts(["In the beginning."], tok, context_length=64, max_tokens=640)


def test_budget_shorter_than_one_context_is_named(smollm):
    _, tok = smollm
    with pytest.raises(ValueError, match="max_tokens=10 is less than one context of context_length=64"):
        tokenize_contexts(["In the beginning."], tok, context_length=64, max_tokens=10)


def test_unknown_embedded_model_is_named():
    with pytest.raises(ValueError, match="unknown embedded model 'embedded:gpt5'; known: embedded:smollm2-135m"):
        load_model("embedded:gpt5")


def test_unknown_hub_model_and_dataset_are_named_in_one_line():
    """Offline (as on every machine without network), a hub id that cannot be loaded is named."""
    code = (
        "from saeseeds.activations.models import load_model\n"
        "from saeseeds.activations.corpus import load_texts\n"
        "for f, a in ((load_model, 'no-such-org/no-such-model'), (load_texts, 'no-such-org/no-such-corpus')):\n"
        "    try:\n        f(a)\n    except ValueError as e:\n        print(str(e).replace(chr(10), ' '))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2, proc.stdout + proc.stderr[-2000:]
    assert lines[0].startswith("model source 'no-such-org/no-such-model' (revision 'main') cannot be loaded: ")
    assert lines[1].startswith("dataset source 'no-such-org/no-such-corpus' (split 'train') cannot be loaded: ")


def test_hook_missing_from_the_model_is_named_with_nearby_names(smollm):
    model, _ = smollm
    with pytest.raises(ValueError, match=r"hook 'layers.2.mpl' is not a submodule of LlamaForCausalLM; valid names include \[.*'layers.2.mlp'"):
        resolve_hook(model, "layers.2.mpl")


def test_known_layout_agrees_with_the_real_embedded_model(smollm):
    """The config check's table of hook names, against the loaded SmolLM2: what it accepts exists."""
    model, _ = smollm
    family, n_blocks, _ = KNOWN_MODELS["embedded:smollm2-135m"]
    layout = LAYOUTS[family]
    real = {name for name, _ in model.base_model.named_modules() if name}
    accepted = [*layout.top, *(f"{layout.blocks}.{i}" for i in range(n_blocks))]
    accepted += [f"{layout.blocks}.{i}.{child}" for i in range(n_blocks) for child in layout.block_children]
    for name in accepted:
        assert hook_problem("embedded:smollm2-135m", name) is None
        assert name in real, name
    assert f"{layout.blocks}.{n_blocks}" not in real
    assert hook_problem("embedded:smollm2-135m", f"{layout.blocks}.{n_blocks}.mlp") is not None
    # every direct child of a real block is known to the table
    assert {n.split(".")[2] for n in real if n.count(".") == 2 and n.startswith("layers.")} == set(layout.block_children)
