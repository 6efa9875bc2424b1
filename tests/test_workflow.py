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


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Runs the smoke study once in a scratch copy of the workflow; yields (workdir, config)."""
    workdir = tmp_path_factory.mktemp("smoke")
    for name in ("workflow", "config"):
        shutil.copytree(ROOT / name, workdir / name)
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
    assert len(summary) == 3 and summary["shared_paper_mean"].between(0, 1).all()
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


def test_terminal_shows_each_stage_with_its_progress(study):
    """Progress lines of the jobs reach Snakemake's terminal (local executor), one per line, named by job;
    the rule logs keep the full bars."""
    workdir, _ = study
    lines = (workdir / "terminal.txt").read_text().splitlines()
    caching = "[activations/smollm2-135m/kjv-pydoc/layers.2.mlp+layers.1] activations layers.2.mlp+layers.1: "
    assert any(line.startswith(caching) and line.endswith("started") for line in lines)
    assert any(line.startswith(caching + "12,288/12,288 tok (100%)") and "done in" in line for line in lines)
    training = [line for line in lines if line.startswith("[train/smollm2-135m/kjv-pydoc/layers.2.mlp/topk-256/seeds_0] ")]
    assert training and re.search(r": \d+/\d+ step \(100%\), [\d.,]+ step/s, done in", training[-1]), training
    log = (workdir / "logs/train/smollm2-135m/kjv-pydoc/layers.2.mlp/topk-256/seeds_0.log").read_text()
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
