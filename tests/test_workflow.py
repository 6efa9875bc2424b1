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

from saeseeds.store import open_store

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

MATCH_COLUMNS = ["latent", "enc_partner", "enc_cos", "dec_partner", "dec_cos", "enc_maxcos", "dec_maxcos", "shared"]


def snakemake(workdir, *args):
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/smoke.yaml", *args]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)


EXTERNAL = "theirs"
EXTERNAL_PERM = np.random.default_rng(11).permutation(64)
EXTERNAL_SUBSET = np.random.default_rng(12).permutation(64)[:48]


def write_external_set(workdir):
    """Three existing checkpoints of unequal sizes for the smoke study's external set `theirs`, in three layouts:
    a (SAELens, 64 latents), b (dictionary_learning state dict: a's latents shuffled), c (plain npz: 48 of a's
    latents, shuffled). Written in each library's documented layout with numpy/torch only, to keep the fixture fast."""
    import torch
    from safetensors.numpy import save_file

    rng = np.random.default_rng(10)
    enc, dec = rng.standard_normal((64, 576)).astype(np.float32), rng.standard_normal((64, 576)).astype(np.float32)
    root = workdir / "external" / EXTERNAL
    (root / "a").mkdir(parents=True)
    (root / "a" / "cfg.json").write_text(json.dumps({"d_in": 576, "d_sae": 64, "architecture": "topk"}))
    save_file({"W_enc": np.ascontiguousarray(enc.T), "W_dec": dec}, str(root / "a" / "sae_weights.safetensors"))
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
    log = next((workdir / "logs" / "import_checkpoint").rglob("seed0.log")).read_text()
    assert "firing frequency unknown" in log
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
    assert len(table) == 64 + 64 + 48 and table["firing_frequency"].isna().all()
    c = table[table["label"] == "seed2"]
    assert (c["n_shared"] == 2).all() and (c["partner_seed0"].to_numpy() == EXTERNAL_SUBSET).all()
    summary = pd.read_csv(workdir / "results" / "summary.csv").set_index("sae")
    assert summary.loc[EXTERNAL, "arch"] == "external" and np.isnan(summary.loc[EXTERNAL, "fvu"])
    assert summary.loc[EXTERNAL, "shared_paper_mean"] == pytest.approx((1 + 0.75 + 0.75) / 3, abs=1e-4)  # CSV: 4 decimals


FIGURES = ["fig1_matched_cosine", "fig2_only_in_base", "fig3_firing", "fig4_ablations", "fig5_layers",
           "figA1_labellings", "figA2_encoder_cosines", "figA3_decoder_cosines", "fig6_autointerp"]


def test_figures_and_summary(study):
    workdir, _ = study
    for name in FIGURES:
        png = workdir / "results" / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        html = (workdir / "results" / "figures" / f"{name}.html").read_text()
        assert "cdn.jsdelivr" not in html
    summary = pd.read_csv(workdir / "results" / "summary.csv")
    assert len(summary) == 4 and summary["shared_paper_mean"].between(0, 1).all()  # 3 trained sets + `theirs`
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
        seeds = sorted(config["saes"][row["sae"]].get("seeds", config["seeds"]))
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
        fvu = np.mean([json.loads((d / f"seed{s}" / "metrics.json").read_text())["fvu"] for s in seeds])
        assert row["fvu"] == pytest.approx(fvu)
        chance = json.loads((d / "chance.json").read_text())
        assert row["chance_init_shared_paper"] == chance["init"]["shared_paper"]


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
    assert set(jobs) == set(FIGURES)


def test_new_threshold_reruns_matching_derived_rules_but_no_training(study):
    workdir, _ = study
    configfile = edited_config(workdir, lambda c: c["match"].update(threshold=0.6))
    jobs = planned(workdir, "--configfile", configfile)
    assert {"match", "chance", "orphans", "summary"} <= set(jobs)
    assert not [r for r in jobs if r.startswith(("train", "activations"))]
    changed = snakemake(workdir, "--list-changes", "params", "--configfile", configfile).stdout
    assert "matches/seed0-seed1.parquet" in changed and "sae.safetensors" not in changed


def test_changing_one_variant_reruns_only_its_chain(study):
    workdir, _ = study
    jobs = planned(workdir, "--configfile", edited_config(workdir, lambda c: c["saes"]["topk-128"].update(k=4)))
    per_variant = [p for rule, outs in jobs.items() if rule not in FIGURES + ["summary"] for p in outs]
    assert per_variant and all("/topk-128/" in p for p in per_variant)
    assert any(r.startswith("train") for r in jobs) and "activations" not in jobs


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
