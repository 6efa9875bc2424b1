"""The conda environment of the rules (workflow/envs/saeseeds.yaml) pins exactly what requirements.lock pins."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def lock_pins() -> dict[str, str]:
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    return dict(line.split("==") for line in lines if line and not line.startswith("#"))


def test_conda_env_lists_the_lock_files_pins():
    env = yaml.safe_load((ROOT / "envs" / "saeseeds.yaml").read_text())
    pip = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[^=\s]+", spec) for spec in pip), "every pip entry an exact pin"
    assert dict(spec.split("==") for spec in pip) == lock_pins()
    python = next(item for item in env["dependencies"] if isinstance(item, str) and item.startswith("python="))
    assert python == "python=3.11"  # the lock is a Python 3.11 freeze


def test_lock_pins_the_slurm_executor_plugins():
    pins = lock_pins()
    assert "snakemake-executor-plugin-slurm" in pins and "snakemake-executor-plugin-slurm-jobstep" in pins


def test_every_rule_runs_in_the_conda_env():
    rules = sorted((ROOT / "workflow" / "rules").glob("*.smk"))
    for path in rules:
        text = path.read_text()
        scripts = len(re.findall(r"^\s+script:", text, flags=re.M))
        envs = len(re.findall(r"^\s+conda:\n\s+CONDA_ENV$", text, flags=re.M))
        assert scripts == envs, f"{path.name}: {scripts} rules with a script, {envs} with conda: CONDA_ENV"
    common = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    env_path = re.search(r'^CONDA_ENV = "(.+)"$', common, flags=re.M).group(1)
    assert (ROOT / "workflow" / "rules" / env_path).resolve() == (ROOT / "envs" / "saeseeds.yaml").resolve()
