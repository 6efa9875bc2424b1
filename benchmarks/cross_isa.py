"""What reproduces where: two small studies run twice, once with the CPU's full instruction set and once restricted
to AVX2 (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2, MKL_ENABLE_INSTRUCTIONS=AVX2: what an AVX2-only machine
runs), then compared file by file and by the statistics a reader looks at.

    .venv/bin/python benchmarks/cross_isa.py [--keep DIR]

1. The smoke study's first site (SmolLM2 layer-2 MLP: caching, 3 seeds of a 256-latent SAE, matching): how many
   activation chunks, checkpoints and matchings are byte-identical across the two instruction sets.
2. The default study's synthetic site (4 seeds of its 256-latent SAE, 12 passes), whose SAEs do converge: the shared
   fraction of every seed pair under both instruction sets, next to its spread over seed pairs (the seed-to-seed
   spread a reader compares a difference with).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def synthetic_config() -> dict:
    """The default study cut to its synthetic site, on 4 seeds."""
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    site = next(s for s in config["sites"] if config["models"][s["model"]]["source"] == "synthetic")
    sae = site["saes"][0]
    config["models"] = {site["model"]: config["models"][site["model"]]}
    config["datasets"] = {site["dataset"]: config["datasets"][site["dataset"]]}
    config["sites"] = [site]
    config["saes"] = {sae: config["saes"][sae]}
    config["seeds"] = [0, 1, 2, 3]
    config.pop("autointerp", None)
    config["figures"] = {"style": config["figures"]["style"]}
    return config


def run_site(workdir: Path, env_extra: dict[str, str], config: dict) -> Path:
    """Runs `config`'s first site and SAE up to the matchings of every seed pair in `workdir`; returns its folder."""
    for name in ("workflow", "config"):
        shutil.copytree(ROOT / name, workdir / name)
    (workdir / "config" / "run.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    site = config["sites"][0]
    sae = site["saes"][0]
    seeds = config["saes"][sae].get("seeds", config["seeds"])
    prefix = f"results/{site['model']}/{site['dataset']}/{site['hooks'][0]}/{sae}"
    targets = [f"{prefix}/matches/seed{a}-seed{b}.parquet" for i, a in enumerate(seeds) for b in seeds[i + 1 :]]
    env = {**os.environ, **env_extra, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "snakemake", *targets, "--cores", "2", "--configfile", "config/run.yaml"]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-4000:])
    return workdir / prefix


def compare(a: Path, b: Path) -> None:
    """Prints byte-identity per kind of file and the shared fractions of both runs."""
    site_a, site_b = a.parents[0], b.parents[0]
    kinds = {
        "activation rows (zarr chunks)": sorted(p.relative_to(site_a) for p in (site_a / "activations.zarr").glob("activations/c/**/*") if p.is_file()),
        "token ids (zarr chunks)": sorted(p.relative_to(site_a) for p in (site_a / "activations.zarr").glob("tokens/c/**/*") if p.is_file()),
        "checkpoints (sae.safetensors)": sorted(p.relative_to(site_a) for p in a.glob("seed*/sae.safetensors")),
        "matches (parquet)": sorted(p.relative_to(site_a) for p in a.glob("matches/*.parquet")),
    }
    for kind, files in kinds.items():
        same = sum((site_a / f).read_bytes() == (site_b / f).read_bytes() for f in files)
        print(f"{kind}: {same} of {len(files)} byte-identical")
    rows = []
    for f in sorted(a.glob("matches/*.parquet")):
        fa, fb = pd.read_parquet(f)["shared"].mean(), pd.read_parquet(b / "matches" / f.name)["shared"].mean()
        rows.append((f.stem, 100 * fa, 100 * fb))
    table = pd.DataFrame(rows, columns=["pair", "shared % (full ISA)", "shared % (AVX2)"])
    table["difference (points)"] = table.iloc[:, 2] - table.iloc[:, 1]
    print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    print(f"seed-to-seed spread of the shared fraction (std over pairs, full ISA): {table.iloc[:, 1].std(ddof=1):.2f} points")
    print(f"largest cross-ISA difference: {table['difference (points)'].abs().max():.2f} points")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary folder)")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="cross-isa-"))
    smoke = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    for name, config in (("smoke study, first site", smoke), ("synthetic site, 4 seeds", synthetic_config())):
        print(f"== {name}")
        full = run_site(base / name.split(",")[0].replace(" ", "-") / "full", {}, config)
        avx2 = run_site(base / name.split(",")[0].replace(" ", "-") / "avx2", AVX2, config)
        compare(full, avx2)
    if not args.keep:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
