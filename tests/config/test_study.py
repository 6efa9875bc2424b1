"""Config validation: the schema and the cross-key checks reject bad studies, naming the key."""

import copy
from pathlib import Path

import pytest
import yaml

from saeseeds.config import study
ROOT = Path(__file__).resolve().parents[2]


def load(name):
    return yaml.safe_load((ROOT / "config" / name).read_text())


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml", "paper.yaml"])
def test_shipped_configs_are_valid(name):
    config = study.validate_schema(load(name))
    study.check_study(config)
    study.check_training(config)
    assert len(study.sites(config)) >= 1


def test_schema_fills_defaults():
    config = load("smoke.yaml")
    del config["match"]["threshold"]
    study.validate_schema(config)
    assert config["match"]["threshold"] == 0.7


@pytest.mark.parametrize(
    "path, value, key",
    [
        (("match", "threshold"), 1.5, "match.threshold"),
        (("match", "threshold"), 0, "match.threshold"),
        (("match", "definition"), "loose", "match.definition"),
        (("seeds",), [0], "seeds"),
        (("seeds",), [0, 0], "seeds"),
        (("data_seed",), -1, "data_seed"),
        (("activations", "max_tokens"), 0, "activations.max_tokens"),
        (("activations", "dtype"), "int8", "activations.dtype"),
        (("train", "device"), "gpu", "train.device"),
        (("saes", "topk-256", "arch"), "sigmoid", "saes.topk-256.arch"),
        (("saes", "topk-256", "num_latents"), -4, "saes.topk-256.num_latents"),
        (("saes", "topk-256", "lerning_rate"), 0.1, "saes.topk-256.lerning_rate"),
        (("sites", 0, "hooks"), [], "sites.0.hooks"),
    ],
)
def test_schema_rejects_bad_values_naming_the_key(path, value, key):
    config = load("smoke.yaml")
    target = config
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(study.ConfigError) as err:
        study.validate_schema(config)
    assert f"'{key}'" in str(err.value)


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c["sites"][0].update(model="gpt9"), "sites.0.model"),
        (lambda c: c["sites"][0].update(dataset="nope"), "sites.0.dataset"),
        (lambda c: c["sites"][0].update(saes=["missing"]), "sites.0.saes"),
        (lambda c: c["saes"]["topk-256"].update(k=1000), "saes.topk-256.k"),
        (lambda c: c["activations"].update(heldout_tokens=10**9), "activations.heldout_tokens"),
        (lambda c: c["saes"]["topk-256"].update(batch_size=10**9), "saes.topk-256.batch_size"),
    ],
)
def test_cross_key_checks_name_the_key(edit, key):
    config = study.validate_schema(load("smoke.yaml"))
    edit(config)
    with pytest.raises(study.ConfigError) as err:
        study.check_study(config)
    assert f"'{key}'" in str(err.value)


def test_sites_and_pairs_expand_the_study():
    config = study.validate_schema(load("paper.yaml"))
    pairs = study.site_saes(config)
    assert (study.Site("pythia-160m", "pile", "layers.6.mlp"), "relu-32k") in pairs
    assert (study.Site("llama3-8b", "fineweb", "layers.24.mlp"), "topk-32k") not in pairs
    assert len(study.seed_pairs(config["seeds"])) == 36
    assert study.site_activations(config, "llama3-8b", "fineweb", "layers.24.mlp")["max_tokens"] == 200_000_000
    assert study.site_activations(config, "gpt2", "fineweb", "h.6")["max_tokens"] == 1_000_000_000


def test_sae_entry_splits_into_model_and_training_configs():
    sae_cfg, train_cfg = study.sae_train_configs(
        {"arch": "topk", "num_latents": 64, "k": 4, "batch_size": 32, "max_tokens": 64}, {"device": "cpu", "threads": 2}
    )
    assert (sae_cfg.num_latents, sae_cfg.k) == (64, 4)
    assert (train_cfg.batch_size, train_cfg.device) == (32, "cpu")
    with pytest.raises(study.ConfigError, match="lerning_rate"):
        study.sae_train_configs({"arch": "topk", "num_latents": 64, "lerning_rate": 1.0})


def test_training_settings_are_checked_before_any_job():
    config = study.validate_schema(load("smoke.yaml"))
    config["saes"]["topk-256"]["warmup_steps"] = 5
    config["saes"]["topk-256"]["optimizer"] = "adam"
    config["train"]["device"] = "cuda:x"
    with pytest.raises(study.ConfigError, match="device"):
        study.check_training(config)


def test_seed_groups_cover_every_seed_once():
    assert study.seed_groups([3, 1, 2, 0, 4], 2) == [[0, 1], [2, 3], [4]]
    assert study.seed_groups(list(range(9)), 9) == [list(range(9))]


def test_variant_seeds_default_to_the_study_seeds():
    config = study.validate_schema(load("config.yaml"))
    assert study.sae_seeds(config, "topk-1152-k4") == sorted(config["seeds"])
    assert study.sae_seeds(config, "topk-576-k8") == config["saes"]["topk-576-k8"]["seeds"] != sorted(config["seeds"])
    assert study.baseline_sae(config) == "topk-576-k8"
    del config["figures"]["baseline"]
    assert study.baseline_sae(config) == "topk-1152-k4"  # the first variant of the first site


@pytest.mark.parametrize(
    "edit,key",
    [
        (lambda c: c["saes"]["topk-256"].update(seeds=[0]), "saes.topk-256.seeds"),
        (lambda c: c["saes"]["topk-256"].update(seeds=[1, 1]), "saes.topk-256.seeds"),
        (lambda c: c.update(figures={"baseline": "nope"}), "figures.baseline"),
        (lambda c: c.update(figures={"cosine_sae": "nope"}), "figures.cosine_sae"),
        (lambda c: c["sites"].append(dict(c["sites"][0])), "sites"),
        (lambda c: c.update(recipe={"lr": 1}), "recipe"),
    ],
)
def test_variant_and_figure_keys_are_checked(edit, key):
    config = copy.deepcopy(load("smoke.yaml"))
    edit(config)
    with pytest.raises(study.ConfigError, match=f"config key '{key}'"):
        study.check_study(study.validate_schema(config))


def test_x_keys_hold_yaml_anchors():
    config = load("config.yaml")
    assert "x-recipe" in config
    study.validate_schema(config)
    assert config["saes"]["relu-576"]["max_tokens"] == config["x-recipe"]["max_tokens"]
