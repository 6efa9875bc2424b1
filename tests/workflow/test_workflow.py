"""The smoke study end to end: every output exists and honours its contract; a rerun does nothing."""

import json
import os
import re
import shutil
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from safetensors.numpy import load_file

from saeseeds.activations.store import open_store

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

MATCH_COLUMNS = ["latent", "enc_partner", "enc_cos", "dec_partner", "dec_cos", "enc_maxcos", "dec_maxcos", "shared"]


def snakemake(workdir, *args):
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/smoke.yaml", *args]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)


EXTERNAL = "theirs"
NO_SITE_SET = "theirs-nosite"  # the same checkpoints, listed under no site: results/external/none/none/
EXTERNAL_PERM = np.random.default_rng(11).permutation(64)
EXTERNAL_SUBSET = np.random.default_rng(12).permutation(64)[:48]


def write_external_set(workdir):
    """Three existing checkpoints of unequal sizes for the smoke study's external set `theirs`, in three layouts:
    a (SAELens TopK, k = 8, with its biases, 64 latents), b (dictionary_learning state dict without k: a's latents
    shuffled), c (plain npz: 48 of a's latents, shuffled). Written in each library's documented layout with
    numpy/torch only, to keep the fixture fast (tests/matching/test_external_encoder.py checks the encoders
    against the real libraries)."""
    import torch
    from safetensors.numpy import save_file

    rng = np.random.default_rng(10)
    enc, dec = rng.standard_normal((64, 576)).astype(np.float32), rng.standard_normal((64, 576)).astype(np.float32)
    root = workdir / "external" / EXTERNAL
    (root / "a").mkdir(parents=True)
    (root / "a" / "cfg.json").write_text(json.dumps({"d_in": 576, "d_sae": 64, "architecture": "topk", "k": 8}))
    save_file({"W_enc": np.ascontiguousarray(enc.T), "W_dec": dec, "b_enc": np.zeros(64, np.float32),
               "b_dec": np.zeros(576, np.float32)}, str(root / "a" / "sae_weights.safetensors"))
    (root / "b").mkdir()
    p = EXTERNAL_PERM
    torch.save({"encoder.weight": torch.from_numpy(enc[p]), "encoder.bias": torch.zeros(64),
                "decoder.weight": torch.from_numpy(np.ascontiguousarray(dec[p].T)), "b_dec": torch.zeros(576)}, root / "b" / "ae.pt")
    (root / "b" / "config.json").write_text(json.dumps({"trainer": {"dict_class": "AutoEncoderTopK", "activation_dim": 576, "dict_size": 64}}))
    (root / "c").mkdir()
    np.savez(root / "c" / "sae.npz", W_enc=enc[EXTERNAL_SUBSET], W_dec=dec[EXTERNAL_SUBSET])
    config = yaml.safe_load((workdir / "config" / "smoke.yaml").read_text())
    config["saes"][EXTERNAL] = {"checkpoints": [f"external/{EXTERNAL}/{x}" for x in "abc"]}
    config["sites"][0]["saes"].append(EXTERNAL)
    config["saes"][NO_SITE_SET] = {"checkpoints": [f"external/{EXTERNAL}/{x}" for x in "abc"]}
    (workdir / "config" / "smoke.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Runs the smoke study once in a scratch copy of the workflow, with the external set `theirs` added to the
    first site (write_external_set); yields (workdir, config) with config the repository's smoke.yaml."""
    workdir = tmp_path_factory.mktemp("smoke")
    for name in ("workflow", "config"):
        shutil.copytree(ROOT / name, workdir / name)
    write_external_set(workdir)
    proc = snakemake(workdir)
    assert proc.returncode == 0, proc.stderr[-6000:]
    (workdir / "terminal.txt").write_text(proc.stdout + proc.stderr)  # what a person running the study saw
    return workdir, yaml.safe_load((ROOT / "config/smoke.yaml").read_text())


def sae_dir(workdir, config):
    site = config["sites"][0]
    return workdir / "results" / site["model"] / site["dataset"] / site["hooks"][0] / next(iter(config["saes"]))


def test_activation_store_contract(study):
    workdir, config = study
    site = config["sites"][0]
    store = open_store(workdir / "results" / site["model"] / site["dataset"] / site["hooks"][0] / "activations.zarr")
    assert store.attrs["complete"] is True
    assert store.attrs["n_tokens"] == config["activations"]["max_tokens"]
    assert store.d_in == 576
    assert store.array.dtype == np.float16
    for key in ("model", "revision", "dataset", "hook"):
        assert store.attrs[key]


def test_checkpoints_metrics_and_firing(study):
    workdir, config = study
    n = next(iter(config["saes"].values()))["num_latents"]
    orders = set()
    for seed in config["seeds"]:
        d = sae_dir(workdir, config) / f"seed{seed}"
        tensors = load_file(d / "sae.safetensors")
        assert tensors["encoder.weight"].shape == (n, 576) and tensors["W_dec"].shape == (n, 576)
        assert tensors["encoder.bias"].shape == (n,) and tensors["b_dec"].shape == (576,)
        cfg = json.loads((d / "cfg.json").read_text())
        assert cfg["num_latents"] == n and cfg["d_in"] == 576
        metrics = json.loads((d / "metrics.json").read_text())
        assert metrics["seed"] == seed and metrics["data_seed"] == config["data_seed"]
        assert 0 < metrics["fvu"] < 1 and 0 <= metrics["dead_fraction"] <= 1
        orders.add(metrics["batch_order_sha256"])
        curve = pd.read_parquet(d / "loss_curve.parquet")
        assert list(curve.columns)[:4] == ["step", "loss", "fvu", "l0"] and len(curve) > 0
        firing = np.load(d / "firing.npy")
        assert firing.shape == (n,) and ((firing >= 0) & (firing <= 1)).all()
    assert len(orders) == 1  # every seed read the same batches in the same order


def test_matches_contract(study):
    workdir, config = study
    n = next(iter(config["saes"].values()))["num_latents"]
    for a, b in combinations(sorted(config["seeds"]), 2):
        table = pd.read_parquet(sae_dir(workdir, config) / "matches" / f"seed{a}-seed{b}.parquet")
        assert list(table.columns) == MATCH_COLUMNS
        assert len(table) == n and (table["latent"].to_numpy() == np.arange(n)).all()
        assert sorted(table["enc_partner"]) == list(range(n)) and sorted(table["dec_partner"]) == list(range(n))
        assert (table["enc_maxcos"] >= table["enc_cos"] - 1e-6).all()
        expected = (table.enc_partner == table.dec_partner) & (table.enc_cos >= 0.7) & (table.dec_cos >= 0.7)
        assert (table["shared"] == expected).all()


def test_orphans_contract(study):
    workdir, config = study
    seeds = sorted(config["seeds"])
    subsets = pd.read_parquet(sae_dir(workdir, config) / "orphans" / "subsets.parquet")
    assert list(subsets.columns) == ["size", "base", "members", "only_in_base"]
    expected_rows = sum(len(list(combinations(seeds, m))) * m for m in range(2, len(seeds) + 1))
    assert len(subsets) == expected_rows
    assert subsets["only_in_base"].between(0, 1).all()
    latents = pd.read_parquet(sae_dir(workdir, config) / "orphans" / "latents.parquet")
    assert list(latents.columns) == ["base", "latent", "n_shared", "firing_frequency"]
    assert latents["n_shared"].between(0, len(seeds) - 1).all()


def test_stability_table_contract(study):
    """One row per (seed, latent) by original id; n_shared and partners agree with orphans and matches."""
    workdir, config = study
    seeds = sorted(config["seeds"])
    d = sae_dir(workdir, config)
    table = pd.read_parquet(d / "stability.parquet")
    assert list(table.columns[:5]) == ["checkpoint", "label", "latent", "n_shared", "firing_frequency"]
    for s in seeds:
        assert {f"partner_seed{s}", f"enc_cos_seed{s}", f"dec_partner_seed{s}", f"dec_cos_seed{s}", f"shared_seed{s}"} <= set(table.columns)
    latents = pd.read_parquet(d / "orphans" / "latents.parquet")
    assert (table["n_shared"].to_numpy() == latents["n_shared"].to_numpy()).all()
    assert np.allclose(table["firing_frequency"], latents["firing_frequency"])
    first = table[table["label"] == f"seed{seeds[0]}"]
    assert set(first["checkpoint"]) == {str(Path("results") / d.relative_to(workdir / "results") / f"seed{seeds[0]}")}
    matches = pd.read_parquet(d / "matches" / f"seed{seeds[0]}-seed{seeds[1]}.parquet")
    assert (first[f"partner_seed{seeds[1]}"].to_numpy() == matches["enc_partner"].to_numpy()).all()
    second = table[table["label"] == f"seed{seeds[1]}"]  # read backwards: the partner's partner is the latent
    assert (matches["enc_partner"].to_numpy()[second[f"partner_seed{seeds[0]}"].to_numpy()] == second["latent"].to_numpy()).all()
    csv = pd.read_csv(d / "stability.csv")
    assert list(csv.columns) == list(table.columns) and len(csv) == len(table)


def test_external_set_of_unequal_sizes_honours_the_same_contracts(study):
    """`theirs`: imported (no training), matched rectangularly, chance by random matching only, orphans,
    stability by original id, a summary row; Fig 3 leaves it out with a logged reason."""
    workdir, config = study
    site = config["sites"][0]
    d = workdir / "results" / site["model"] / site["dataset"] / site["hooks"][0] / EXTERNAL
    assert not list((workdir / "logs" / "train").rglob(f"*{EXTERNAL}*"))
    metrics = json.loads((d / "seed1" / "metrics.json").read_text())
    assert metrics["external"]["layout"] == "dictionary_learning" and metrics["external"]["reference"] == f"external/{EXTERNAL}/b"
    assert metrics["fvu"] is None and metrics["sae"] == {"arch": "external", "num_latents": 64}
    logs = workdir / "logs" / "import_checkpoint" / site["model"] / site["dataset"] / site["hooks"][0] / EXTERNAL
    assert "firing frequencies: the site's 2048 held-out rows through the checkpoint's own encoder" in (logs / "seed0.log").read_text()
    assert "firing frequency unknown (Fig 3 leaves this set out): dictionary_learning dict_class" in (logs / "seed1.log").read_text()
    assert "holds directions only" in (logs / "seed2.log").read_text()
    firing = np.load(d / "seed0" / "firing.npy")
    heldout = open_store(workdir / "results" / site["model"] / site["dataset"] / site["hooks"][0] / "activations.zarr").heldout()
    enc = load_file(d / "seed0" / "sae.safetensors")["encoder.weight"]
    pre = heldout @ enc.T
    expected = np.zeros(64)
    for row in pre:  # the 8 largest pre-activations that are positive fire (SAELens' TopK, biases 0)
        top = np.argsort(-row)[:8]
        expected[top[row[top] > 0]] += 1
    np.testing.assert_allclose(firing, expected / len(heldout))
    same = pd.read_parquet(d / "matches" / "seed0-seed1.parquet")
    assert list(same.columns) == MATCH_COLUMNS and same["shared"].all()
    assert (same["enc_partner"].to_numpy() == np.argsort(EXTERNAL_PERM)).all()
    rect = pd.read_parquet(d / "matches" / "seed0-seed2.parquet")
    assert len(rect) == 64 and int(rect["shared"].sum()) == 48 and (rect["enc_partner"] == -1).sum() == 16
    shared = rect[rect["shared"]]
    assert (EXTERNAL_SUBSET[shared["enc_partner"].to_numpy()] == shared["latent"].to_numpy()).all()
    chance = json.loads((d / "chance.json").read_text())
    assert chance["init"] is None and "unknown" in chance["init_note"] and 0 <= chance["random"]["shared_paper"] < 0.2
    subsets = pd.read_parquet(d / "orphans" / "subsets.parquet")
    only = subsets.set_index(["members", "base"])["only_in_base"]
    assert only[("0,2", 0)] == 16 / 64 and only[("0,2", 2)] == 0 and only[("0,1", 1)] == 0
    table = pd.read_parquet(d / "stability.parquet")
    assert len(table) == 64 + 64 + 48 and table["firing_frequency"].isna().to_numpy().sum() == 64 + 48  # a's known
    c = table[table["label"] == "seed2"]
    assert (c["n_shared"] == 2).all() and (c["partner_seed0"].to_numpy() == EXTERNAL_SUBSET).all()
    summary = pd.read_csv(workdir / "results" / "summary.csv").set_index("sae")
    assert summary.loc[EXTERNAL, "arch"] == "external" and np.isnan(summary.loc[EXTERNAL, "fvu"])
    assert summary.loc[EXTERNAL, "shared_paper_mean"] == pytest.approx((1 + 0.75 + 0.75) / 3, abs=1e-4)  # CSV: 4 decimals
    fig3_log = (workdir / "logs" / "figures" / "fig3_firing.log").read_text()
    assert f"/{EXTERNAL}:" not in fig3_log  # drawn: its base seed's firing is known
    assert f"left out external/none/none/{NO_SITE_SET}: its base seed's firing frequencies are unknown" in fig3_log


def test_external_set_without_a_site_gets_every_analysis_that_needs_no_activations(study):
    """`theirs-nosite` (`theirs`' checkpoints, under no site): imported, matched, chance, orphans, stability,
    consistency, a summary row and a browser without contexts, whose log says why; nothing needing a model ran."""
    workdir, _ = study
    d = workdir / "results" / "external" / "none" / "none" / NO_SITE_SET
    same = pd.read_parquet(d / "matches" / "seed0-seed1.parquet")
    assert same["shared"].all() and (same["enc_partner"].to_numpy() == np.argsort(EXTERNAL_PERM)).all()
    assert json.loads((d / "chance.json").read_text())["init"] is None
    assert pd.read_parquet(d / "stability.parquet")["firing_frequency"].isna().all()  # no site, no rows to encode
    log = (workdir / "logs" / "import_checkpoint" / "external" / "none" / "none" / NO_SITE_SET / "seed0.log").read_text()
    assert "firing frequency unknown (Fig 3 leaves this set out): the set is listed under no site" in log
    assert pd.read_parquet(d / "consistency" / "pwmcc.parquet")["pwmcc"].iloc[0] == pytest.approx(1.0, abs=1e-6)
    assert (d / "orphans" / "subsets.parquet").exists() and (d / "browser" / "index.html").exists()
    log = (workdir / "logs" / "browser" / "external" / "none" / "none" / f"{NO_SITE_SET}.log").read_text()
    assert "no contexts in this browser: an external set listed under no site" in log
    summary = pd.read_csv(workdir / "results" / "summary.csv").set_index("sae")
    assert summary.loc[NO_SITE_SET, "shared_paper_mean"] == pytest.approx(summary.loc[EXTERNAL, "shared_paper_mean"])
    stages = ("train", "autointerp", "functional_substitution", "latent_examples")
    assert not [p for stage in stages for p in (workdir / "logs" / stage).rglob(f"*{NO_SITE_SET}*")]


FIGURES = ["fig1_matched_cosine", "fig2_only_in_base", "fig3_firing", "fig4_ablations", "fig5_layers",
           "figA1_labellings", "figA2_encoder_cosines", "figA3_decoder_cosines", "fig6_autointerp",
           "figF1_substitution", "figF2_loss_recovered"]
TRAJECTORY_FIGURE = "figX2_trajectory"  # drawn where a variant has `snapshots` (smoke: topk-128), not in paper.yaml


def test_figures_and_summary(study):
    workdir, _ = study
    for name in FIGURES:
        png = workdir / "results" / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        html = (workdir / "results" / "figures" / f"{name}.html").read_text()
        assert "cdn.jsdelivr" not in html
    summary = pd.read_csv(workdir / "results" / "summary.csv")
    assert len(summary) == 5 and summary["shared_paper_mean"].between(0, 1).all()  # 3 trained sets + 2 external
    assert (workdir / "results" / "summary.md").read_text().startswith("| site |")
    fits = pd.read_csv(workdir / "results" / "figures" / "fig2_powerlaw_fits.csv")
    assert list(fits.columns[:4]) == ["label", "model", "points", "a"]


def test_autointerp_outputs(study):
    """Explanations and scores per seed for the chosen latents, their examples, Table 1."""
    workdir, config = study
    ai = config["autointerp"]
    site = ai["sites"][0]
    d = workdir / "results" / site / ai["saes"][0] / "autointerp"
    latents = pd.read_parquet(d / "latents.parquet")
    assert sorted(latents.seed.unique()) == ai["seeds"] and (latents.groupby("seed").size() == ai["n_latents"]).all()
    for seed in ai["seeds"]:
        scores = pd.read_parquet(d / f"seed{seed}.parquet")
        assert sorted(scores.latent) == sorted(latents[latents.seed == seed].latent)
        assert scores.score.dropna().between(0, 1).all() and (scores.tp + scores.fn == scores[["tp", "fn"]].sum(axis=1)).all()
        assert (scores.n_answered <= scores.n_active + scores.n_inactive).all()
        examples = pd.read_parquet(d / "examples" / f"seed{seed}.parquet")
        assert set(examples.role) <= {"explain", "active", "inactive"}
        assert examples.token_strs.map(len).eq(ai["window"]).all()
        assert (examples.groupby("latent").role.apply(lambda r: (r == "explain").sum()) <= ai["explain_examples"]).all()
    table = pd.read_csv(workdir / "results" / "figures" / "table1_explanations.csv")
    assert list(table.columns[:3]) == ["label", "level", "dec_cos"] and len(table) >= 1
    log = (workdir / "logs" / "autointerp" / site / f"{ai['saes'][0]}.log").read_text()
    assert "sent to transformers:embedded:smollm2-135m" in log


def test_functional_outputs(study):
    """Loss recovered per seed, the substitution table of every latent, the model test of the sample, summary columns."""
    workdir, config = study
    fn = config["functional"]
    d = workdir / "results" / fn["sites"][0] / fn["saes"][0] / "functional"
    seeds = config["seeds"]
    loss = pd.read_parquet(d / "loss.parquet")
    assert list(loss.seed) == seeds and (loss.contexts == fn["contexts"]).all()
    assert (loss.tokens == fn["contexts"] * (config["activations"]["context_length"] - 1)).all()
    assert (loss.ce_zero > loss.ce_clean).all() and (loss.kl_sae > 0).all() and loss.ce_clean.nunique() == 1
    assert np.allclose(loss.loss_recovered, (loss.ce_zero - loss.ce_sae) / (loss.ce_zero - loss.ce_clean))
    subst = pd.read_parquet(d / "substitution" / "seed0-seed1.parquet")
    n = config["saes"][fn["saes"][0]]["num_latents"]
    assert sorted(subst.latent) == list(range(n))
    matches = pd.read_parquet(d.parent / "matches" / "seed0-seed1.parquet").sort_values("latent")
    assert (subst.partner.to_numpy() == matches.dec_partner.to_numpy()).all()
    fires = subst[subst.firing_rows > 0]
    assert len(fires) and np.allclose(fires.score_partner, 1 - fires.delta_partner / fires.delta_ablate)
    model = pd.read_parquet(d / "model_substitution" / "seed0-seed1.parquet")
    assert len(model) == fn["model_latents"] and set(model.latent) <= set(fires.latent)
    summary = pd.read_parquet(workdir / "results" / "summary.parquet").set_index(["site", "sae"])
    row = summary.loc[(fn["sites"][0], fn["saes"][0])]
    assert row["loss_recovered"] == pytest.approx(loss.loss_recovered.mean())
    assert row["substitution_random"] == pytest.approx(fires.score_random.mean())
    assert summary["loss_recovered"].isna().sum() == len(summary) - 1  # only the measured variant has it


def test_autointerp_rerun_is_answered_from_the_cache(study):
    workdir, config = study
    ai = config["autointerp"]
    d = workdir / "results" / ai["sites"][0] / ai["saes"][0] / "autointerp"
    before = {s: pd.read_parquet(d / f"seed{s}.parquet") for s in ai["seeds"]}
    proc = snakemake(workdir, "--forcerun", "autointerp")  # and what depends on it, so the study stays complete
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (workdir / "logs" / "autointerp" / ai["sites"][0] / f"{ai['saes'][0]}.log").read_text()
    assert re.search(r"model calls: [1-9][0-9]* answered from the cache .*, 0 sent to", log), log[-2000:]
    assert "GGUF" not in log  # every answer came from the cache, so the explainer model was never loaded
    for s in ai["seeds"]:
        pd.testing.assert_frame_equal(pd.read_parquet(d / f"seed{s}.parquet"), before[s])


def test_summary_agrees_with_the_matches_brute_force(study):
    """Every summary number recomputed from the per-pair parquet files and metrics by hand."""
    workdir, config = study
    summary = pd.read_parquet(workdir / "results" / "summary.parquet")
    threshold = config["match"]["threshold"]
    for _, row in summary.iterrows():
        d = workdir / "results" / row["site"] / row["sae"]
        external = row["sae"] not in config["saes"]  # `theirs`, added by the fixture: seeds 0..N-1, no training metrics
        seeds = sorted(int(p.name[4:]) for p in d.glob("seed*")) if external else sorted(config["saes"][row["sae"]].get("seeds", config["seeds"]))
        assert row["seeds"] == len(seeds)
        paper, notebook, maxcos = [], [], []
        for a, b in combinations(seeds, 2):
            t = pd.read_parquet(d / "matches" / f"seed{a}-seed{b}.parquet")
            paper.append(np.mean([(t.enc_partner[i] == t.dec_partner[i]) and t.enc_cos[i] >= threshold and t.dec_cos[i] >= threshold for i in range(len(t))]))
            notebook.append(np.mean([t.enc_cos[i] > threshold and t.dec_cos[i] > threshold for i in range(len(t))]))
            maxcos.append(np.mean([t.enc_maxcos[i] >= threshold and t.dec_maxcos[i] >= threshold for i in range(len(t))]))
        assert row["shared_paper_mean"] == pytest.approx(np.mean(paper))
        assert row["shared_paper_std"] == pytest.approx(np.std(paper))
        assert row["shared_notebook_mean"] == pytest.approx(np.mean(notebook))
        assert row["shared_maxcos_mean"] == pytest.approx(np.mean(maxcos))
        fvu = np.mean([json.loads((d / f"seed{s}" / "metrics.json").read_text())["fvu"] or np.nan for s in seeds])
        assert row["fvu"] == pytest.approx(fvu, nan_ok=True)
        chance = json.loads((d / "chance.json").read_text())
        if external:  # someone else's SAEs: their untrained init is unknown, so only the random matching is a chance level
            assert chance["init"] is None and np.isnan(row["chance_init_shared_paper"])
        else:
            assert row["chance_init_shared_paper"] == chance["init"]["shared_paper"]
        assert row["chance_random_shared_paper"] == chance["random"]["shared_paper"]


def test_terminal_shows_each_stage_with_its_progress(study):
    """Progress lines of the jobs reach Snakemake's terminal (local executor), one per line, named by job;
    the rule logs keep the full bars."""
    workdir, _ = study
    lines = (workdir / "terminal.txt").read_text().splitlines()
    caching = "[activations/smollm2-135m/kjv-pydoc/layers.2.mlp+layers.1] activations layers.2.mlp+layers.1: "
    assert any(line.startswith(caching) and line.endswith("started") for line in lines)
    assert any(line.startswith(caching + "12,288/12,288 tok (100%)") and "done in" in line for line in lines)
    training = [line for line in lines if line.startswith("[train/smollm2-135m/kjv-pydoc/layers.2.mlp/topk-256/seeds_0_1_2] ")]
    assert training and re.search(r": \d+/\d+ step \(100%\), [\d.,]+ step/s, done in", training[-1]), training
    log = (workdir / "logs/train/smollm2-135m/kjv-pydoc/layers.2.mlp/topk-256/seeds_0_1_2.log").read_text()
    assert "step/s]" in log and "[train/" not in log  # tqdm's own bar, not the terminal lines


def test_rerun_does_nothing_and_dry_run_touches_nothing(study):
    workdir, _ = study
    before = {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("*") if p.is_file()}
    dry = snakemake(workdir, "--dry-run")
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr
    again = snakemake(workdir)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    after = {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("*") if p.is_file()}
    assert before == after


def planned(workdir, *args):
    """Returns {rule: [outputs]} of the jobs a dry run would run."""
    proc = snakemake(workdir, "--dry-run", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs, rule = {}, None
    for line in proc.stdout.splitlines():
        if line.startswith(("rule ", "localrule ")) and line.endswith(":"):
            rule = line.split()[1].rstrip(":")
            jobs.setdefault(rule, [])
        elif rule and line.strip().startswith("output:"):
            jobs[rule] += [p.strip() for p in line.split(":", 1)[1].split(",")]
    jobs.pop("all", None)
    return jobs


def edited_config(workdir, edit):
    config = yaml.safe_load((workdir / "config" / "smoke.yaml").read_text())
    edit(config)
    path = workdir / "config" / "edited.yaml"
    path.write_text(yaml.safe_dump(config))
    return "config/edited.yaml"


def test_restyling_reruns_only_the_figures(study):
    workdir, _ = study
    style = workdir / "workflow" / "report" / "figure_style.json"
    stat, text = style.stat(), style.read_text()
    try:
        style.write_text(text.replace('"title_size": 16', '"title_size": 18'))
        jobs = planned(workdir)
    finally:
        style.write_text(text)
        os.utime(style, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert set(jobs) == set(FIGURES) | {TRAJECTORY_FIGURE}


def test_new_threshold_reruns_matching_derived_rules_but_no_training(study):
    workdir, _ = study
    configfile = edited_config(workdir, lambda c: c["match"].update(threshold=0.6))
    jobs = planned(workdir, "--configfile", configfile)
    assert {"chance", "orphans", "summary"} <= set(jobs) and any(r.startswith("match_pairs_") for r in jobs)
    assert not [r for r in jobs if r.startswith(("train", "activations"))]
    changed = snakemake(workdir, "--list-changes", "params", "--configfile", configfile).stdout
    assert "matches/seed0-seed1.parquet" in changed and "sae.safetensors" not in changed


def test_changing_one_variant_reruns_only_its_chain(study):
    workdir, _ = study
    jobs = planned(workdir, "--configfile", edited_config(workdir, lambda c: c["saes"]["topk-128"].update(k=4)))
    per_variant = [p for rule, outs in jobs.items() if rule not in FIGURES + [TRAJECTORY_FIGURE, "summary", "matchings_table"] for p in outs]
    assert per_variant and all("/topk-128/" in p for p in per_variant)
    assert any(r.startswith("train") for r in jobs) and "activations" not in jobs


def test_dropping_a_hook_recaches_nothing(study):
    """The smoke study caches layers.2.mlp and layers.1 in one job; with the layers.1 site dropped, the
    layers.2.mlp store holds the same bytes, so nothing is cached or trained again (the job's hook list is
    derived from its outputs, not a params trigger)."""
    workdir, config = study
    assert [s["hooks"] for s in config["sites"]] == [["layers.2.mlp"], ["layers.1"]]  # one caching job for both
    configfile = edited_config(workdir, lambda c: c.update(sites=c["sites"][:1]))
    jobs = planned(workdir, "--configfile", configfile)
    assert not [r for r in jobs if r.startswith(("activations", "train"))], jobs


def test_on_the_fly_trains_the_checkpoints_of_the_cache_without_caching(study, tmp_path):
    """activations.mode on_the_fly: no caching job, no store on disk, and the same checkpoints and examples."""
    workdir, config = study
    for name in ("workflow", "config"):
        shutil.copytree(ROOT / name, tmp_path / name)

    def on_the_fly(c):
        c["activations"]["mode"] = "on_the_fly"
        c["train"]["seeds_per_job"] = 2  # seeds 0 and 1 in one job, one model load (stacked seeds train as alone)

    configfile = edited_config(tmp_path, on_the_fly)
    jobs = planned(tmp_path, "--configfile", configfile)
    assert not [r for r in jobs if r.startswith("activations")] and any(r.startswith("train") for r in jobs)
    site = "results/smollm2-135m/kjv-pydoc/layers.2.mlp"
    examples = f"{site}/topk-256/autointerp/examples/seed0.parquet"  # needs seeds 0 and 1 trained and matched
    cmd = [sys.executable, "-m", "snakemake", examples, "--cores", "2", "--configfile", configfile]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list((tmp_path / "results").rglob("activations.zarr*"))
    for seed in (0, 1):
        ours, cached = (root / site / "topk-256" / f"seed{seed}" for root in (tmp_path, workdir))
        assert (ours / "sae.safetensors").read_bytes() == (cached / "sae.safetensors").read_bytes(), seed
        assert json.loads((ours / "metrics.json").read_text())["activations"] == "on_the_fly"
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / examples), pd.read_parquet(workdir / examples))
    log = (tmp_path / "logs" / "train" / "smollm2-135m" / "kjv-pydoc" / "layers.2.mlp" / "topk-256" / "seeds_0_1.log").read_text()
    assert "computed on the fly" in log


def test_consistency_outputs_pwmcc_matchings_and_seed_intervals(study):
    """PW-MCC per pair (checked against scipy on |cos|), the matchings table, and the summary's jackknife intervals."""
    from scipy.optimize import linear_sum_assignment

    from saeseeds.stats.jackknife import pair_interval

    workdir, config = study
    summary = pd.read_parquet(workdir / "results" / "summary.parquet")
    matchings = pd.read_csv(workdir / "results" / "matchings.csv")
    assert (workdir / "results" / "matchings.html").read_text().startswith("<!DOCTYPE html>")
    threshold = config["match"]["threshold"]
    for _, row in summary.iterrows():
        d = workdir / "results" / row["site"] / row["sae"]
        if row["sae"] not in config["saes"]:
            continue  # the external set of different sizes: rectangular PW-MCC is checked in tests/stats/test_pwmcc.py
        seeds = sorted(config["saes"][row["sae"]].get("seeds", config["seeds"]))
        pairs = pd.read_parquet(d / "consistency" / "pwmcc.parquet")
        assert list(zip(pairs.a, pairs.b)) == list(combinations(seeds, 2)) and pairs["certified"].all()
        a, b = seeds[:2]
        dec = [load_file(str(d / f"seed{s}" / "sae.safetensors"))["W_dec"].astype(np.float64) for s in (a, b)]
        unit = [w / np.linalg.norm(w, axis=1, keepdims=True) for w in dec]
        c = np.abs(unit[0] @ unit[1].T)
        r, k = linear_sum_assignment(c, maximize=True)
        assert pairs["pwmcc"].iloc[0] == pytest.approx(c[r, k].mean(), abs=1e-5)
        assert row["pwmcc_mean"] == pytest.approx(pairs["pwmcc"].mean())
        assert row["pwmcc_signed"] == pytest.approx(row["dec_cos_mean"])
        assert row["interval_method"] == "leave-one-seed-out jackknife"
        flags = {}
        for p in combinations(seeds, 2):
            t = pd.read_parquet(d / "matches" / f"seed{p[0]}-seed{p[1]}.parquet")
            flags[p] = float(((t.enc_partner == t.dec_partner) & (t.enc_cos >= threshold) & (t.dec_cos >= threshold)).mean())
        expected = pair_interval(flags)
        if len(seeds) >= 3:
            assert (row["shared_paper_ci_lo"], row["shared_paper_ci_hi"]) == pytest.approx((expected["ci_lo"], expected["ci_hi"]))
            assert row["pwmcc_ci_lo"] <= row["pwmcc_mean"] <= row["pwmcc_ci_hi"]
            assert np.isfinite(row["only_in_base_max_seeds_ci_lo"])
        else:  # one pair: no seed-level interval
            assert np.isnan(row["shared_paper_ci_lo"]) and np.isnan(row["pwmcc_ci_lo"])
        assert "shared_paper_ci_lo" in summary.columns and "powerlaw_c_ci_lo" in summary.columns
        mine = matchings[(matchings.site == row["site"]) & (matchings.sae == row["sae"])].set_index(["method", "side"])
        assert set(mine.index) == {(m, s) for m in ("hungarian", "greedy", "maxcos", "sinkhorn") for s in ("encoder", "decoder", "both")}
        assert mine.loc[("hungarian", "both"), "above_threshold"] == pytest.approx(flags[(a, b)], abs=1e-4)
        assert (mine.xs("hungarian")["agrees_with_hungarian"] == 1).all()
        assert mine.loc[("greedy", "decoder"), "injective"] == 1 and mine["above_threshold"].between(0, 1).all()


def test_report_includes_the_figures(study):
    workdir, _ = study
    proc = snakemake(workdir, "--report", "results/report.html")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (workdir / "results" / "report.html").stat().st_size > 10_000


def test_paper_design_dry_runs_every_figure(tmp_path):
    """config/paper.yaml cannot run here (GPU, hub), but its whole DAG must resolve."""
    for name in ("workflow", "config"):
        shutil.copytree(ROOT / name, tmp_path / name)
    cmd = [sys.executable, "-m", "snakemake", "--dry-run", "--cores", "1", "--configfile", "config/paper.yaml"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    for name in FIGURES + ["summary", "chance"]:
        assert f"rule {name}:" in proc.stdout or f"localrule {name}:" in proc.stdout, name
    for site in config["sites"]:
        for hook in site["hooks"]:
            assert f"results/{site['model']}/{site['dataset']}/{hook}/activations.zarr" in proc.stdout
    assert "relu-32k/matches/seed0-seed1.parquet" in proc.stdout and "topk-131k/orphans/subsets.parquet" in proc.stdout


def test_consistency_over_training_table_and_figure(study):
    """topk-128 has `snapshots: 3` in the smoke study: checkpoints at steps 5, 10 and the final 20, one table row each."""
    workdir, config = study
    entry = config["saes"]["topk-128"]
    d = workdir / "results" / "smollm2-135m" / "kjv-pydoc" / "layers.2.mlp" / "topk-128"
    steps = json.loads((d / "seed0" / "snapshots" / "steps.json").read_text())["checkpoints"]
    assert [c["step"] for c in steps] == [5, 10, 20] and steps[-1]["dir"] == ".."
    assert (d / "seed1" / "snapshots" / "step5" / "sae.safetensors").is_file()
    assert not (d.parent / "topk-256" / "seed0" / "snapshots").exists()  # 0 snapshots: none written
    table = pd.read_parquet(d / "trajectory.parquet")
    assert list(table.columns) == ["step", "tokens", "final", "pairs", "shared_paper_mean", "shared_paper_std", "mean_matched_dec_cos", "mean_matched_dec_cos_std"]
    assert list(table.step) == [5, 10, 20] and list(table.tokens) == [5 * entry["batch_size"], 10 * entry["batch_size"], entry["max_tokens"]]
    assert list(table.final) == [False, False, True] and (table.pairs == 1).all()
    pd.testing.assert_frame_equal(pd.read_csv(d / "trajectory.csv"), table, check_exact=False, atol=1e-4)
    # the final row is the summary's number for the set, and the step-5 row is the matching of the step-5 checkpoints
    summary = pd.read_parquet(workdir / "results" / "summary.parquet").set_index(["site", "sae"])
    assert table.shared_paper_mean.iloc[-1] == pytest.approx(summary.loc[("smollm2-135m/kjv-pydoc/layers.2.mlp", "topk-128"), "shared_paper_mean"])
    from scipy.optimize import linear_sum_assignment

    def matched(key):
        a, b = (load_file(d / f"seed{s}" / "snapshots" / "step5" / "sae.safetensors")[key].astype(np.float64) for s in (0, 1))
        cos = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
        rows, cols = linear_sum_assignment(cos, maximize=True)
        return cols[np.argsort(rows)], cos[rows, cols][np.argsort(rows)]

    (enc_p, enc_c), (dec_p, dec_c) = matched("encoder.weight"), matched("W_dec")
    threshold = config["match"]["threshold"]
    assert table.shared_paper_mean.iloc[0] == pytest.approx(np.mean((enc_p == dec_p) & (enc_c >= threshold) & (dec_c >= threshold)))
    assert table.mean_matched_dec_cos.iloc[0] == pytest.approx(np.abs(dec_c).mean(), abs=1e-6)
    png = workdir / "results" / "figures" / f"{TRAJECTORY_FIGURE}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (workdir / "results" / "figures" / f"{TRAJECTORY_FIGURE}.html").read_text()
    assert "cdn.jsdelivr" not in html and "checkpoints of one run" in html
def test_browser_of_the_smoke_study_in_chromium(study):
    """Every set has a browser; the autointerp set's opens from file://, sorts, filters, routes between
    seeds through partner links, shades tokens and shows the explanations, reading only its own folder."""
    from test_browser import Page, browser_or_skip, column, wait_title

    workdir, config = study
    for site in config["sites"]:
        for hook in site["hooks"]:
            for sae in site["saes"]:
                folder = workdir / "results" / site["model"] / site["dataset"] / hook / sae / "browser"
                assert {p.name for p in folder.iterdir()} == {"index.html", "browser.js", "browser.css", "data"}, folder
    fn = config["functional"]  # the substitution score of every latent of the tested pair's first seed is a column
    fd = workdir / "results" / fn["sites"][0] / fn["saes"][0]
    subst = pd.read_parquet(next((fd / "functional" / "substitution").glob("seed0-seed*.parquet")))
    table_js = (fd / "browser" / "data" / "seed0" / "table.js").read_text()
    shown = json.loads(table_js[table_js.index(",") + 1 : table_js.rindex(")")])["subst"]
    assert len(shown) == config["saes"][fn["saes"][0]]["num_latents"]
    expected = np.full(len(shown), np.nan)
    expected[subst.latent.to_numpy()] = subst.score_partner.to_numpy()
    assert np.allclose([np.nan if v is None else v for v in shown], expected, atol=6e-5, equal_nan=True)
    assert np.isfinite(expected).sum() > 0
    ai = config["autointerp"]
    d = workdir / "results" / ai["sites"][0] / ai["saes"][0]
    latents = pd.read_parquet(d / "orphans" / "latents.parquet")
    explained = pd.read_parquet(d / "autointerp" / "seed0.parquet").dropna(subset=["explanation"])
    matches = pd.read_parquet(d / "matches" / "seed0-seed1.parquet")
    sync_playwright = browser_or_skip()
    with sync_playwright() as pw:
        p = Page(pw)
        try:
            page = p.page
            url = (d / "browser" / "index.html").as_uri()
            page.goto(url)
            page.wait_for_selector("#latents-body tr")
            assert page.text_content("#page-info").startswith(f"1–100 of {config['saes'][ai['saes'][0]]['num_latents']}")
            page.click("th[data-key=firing]")  # descending first
            base = latents[latents.base == 0].assign(shown=[float(f"{v:.4g}") for v in latents[latents.base == 0].firing_frequency])
            expected = base.sort_values(["shown", "latent"], ascending=[False, True]).latent.head(100)  # as the page rounds
            assert [int(v) for v in column(page, 0)] == expected.tolist()
            page.check("#orphans")
            orphans = int((latents[latents.base == 0].n_shared == 0).sum())
            assert page.text_content("#page-info").startswith(f"1–{min(100, orphans)} of {orphans}") and set(column(page, 1)) == {"0"}
            page.uncheck("#orphans")
            # an explained latent: its explanation, then its decoder partner in seed 1 and back
            latent = int(explained.latent.iloc[0])
            page.goto(url + f"#seed0/latent{latent}")
            wait_title(page, f"Seed 0 · latent {latent}")
            assert page.text_content("#explanation") == explained.explanation.iloc[0]
            partner = int(matches.dec_partner[latent])
            assert page.text_content("#partners-body tr[data-seed='1'] td:nth-child(4) a") == str(partner)
            page.click("#partners-body tr[data-seed='1'] td:nth-child(4) a")
            wait_title(page, f"Seed 1 · latent {partner}")
            assert page.text_content("#partners-body tr[data-seed='0'] td:nth-child(4) a") == str(latent)
            page.go_back()
            wait_title(page, f"Seed 0 · latent {latent}")
            # its contexts are the windows the explainer saw, KJV or pydoc text with shaded active tokens
            assert "explainer saw" in page.text_content("#examples-title")
            acts = page.eval_on_selector_all(".example .tok.active", "ts => ts.map(t => t.style.backgroundColor)")
            assert acts and all(bg.startswith("rgb") for bg in acts)
            assert len(page.text_content("#examples").strip()) > 20
            # a latent autointerp did not explain shows the browser's own contexts and a histogram
            firing = latents[(latents.base == 0) & (latents.firing_frequency > 0.01) & ~latents.latent.isin(explained.latent)]
            other = int(firing.latent.iloc[0])
            page.goto(url + f"#seed0/latent{other}")
            wait_title(page, f"Seed 0 · latent {other}")
            assert "Top-activating contexts (first" in page.text_content("#examples-title")
            assert page.query_selector_all(".example .tok.active") and page.query_selector("#histogram svg rect")
            inside = (d / "browser").as_uri() + "/"
            assert p.requests and all(u.startswith(inside) for u in p.requests), p.requests
            assert not p.errors and not p.dialogs
        finally:
            p.close()
    proc = snakemake(workdir, "--report", "results/report_browser.html")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Latent browsers" in (workdir / "results" / "report_browser.html").read_text()
