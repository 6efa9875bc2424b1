"""The smoke study end to end: every output exists and honours its contract; a rerun does nothing."""

import json
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


def test_figures_and_summary(study):
    workdir, _ = study
    for name in ("fig1_matched_cosine", "fig2_only_in_base", "fig3_firing"):
        png = workdir / "results" / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        html = (workdir / "results" / "figures" / f"{name}.html").read_text()
        assert "cdn.jsdelivr" not in html
    summary = pd.read_csv(workdir / "results" / "summary.csv")
    assert len(summary) == 1 and 0 <= summary.loc[0, "shared_paper_mean"] <= 1


def test_rerun_does_nothing_and_dry_run_touches_nothing(study):
    workdir, _ = study
    before = {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("*") if p.is_file()}
    dry = snakemake(workdir, "--dry-run")
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr
    again = snakemake(workdir)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    after = {p: p.stat().st_mtime_ns for p in (workdir / "results").rglob("*") if p.is_file()}
    assert before == after


def test_report_includes_the_figures(study):
    workdir, _ = study
    proc = snakemake(workdir, "--report", "results/report.html")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (workdir / "results" / "report.html").stat().st_size > 10_000
