"""Start-up: the CLI's help and the jobs that need no torch start without importing it (4-6 s on 2 cores)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"

TORCH_FREE_SCRIPTS = [
    "orphans.py", "summary.py", "recovery.py", "recovery_summary.py", "synthetic_activations.py", "table1_explanations.py",
    "fig1_matched_cosine.py", "fig2_only_in_base.py", "fig3_firing.py", "fig4_ablations.py", "fig5_layers.py",
    "fig6_autointerp.py", "figA1_labellings.py", "figA2_A3_cosines.py", "figX1_recovery.py", "figX2_trajectory.py",
    "figF1_substitution.py", "figF2_loss_recovered.py", "matchings_table.py", "import_checkpoint.py", "truth_match.py",
]
"""Jobs that read tables and write tables or figures: torch would only cost start-up."""


def imported_after(code: str) -> set[str]:
    """Returns the top-level package names in sys.modules after running `code` in a fresh interpreter."""
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env={"PYTHONPATH": str(SRC)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(json.loads(proc.stdout.splitlines()[-1]))


@pytest.mark.parametrize("argv", [["--help"], ["match", "--help"], ["plan", "--help"]])
def test_cli_help_answers_without_torch(argv):
    modules = imported_after(
        f"from saeseeds.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit as e:\n    assert e.code == 0, e.code"
    )
    assert "saeseeds" in modules and "torch" not in modules


def test_cli_still_names_a_bad_input_in_one_line(tmp_path):
    """The errors are looked up lazily: a missing checkpoint still exits 2 with the message, no traceback."""
    cmd = [sys.executable, "-m", "saeseeds.cli", "match", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "m.parquet")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={"PYTHONPATH": str(SRC)})
    assert proc.returncode == 2 and proc.stderr.startswith("saeseeds match: error: ") and "Traceback" not in proc.stderr


def test_jobs_that_need_no_torch_do_not_import_it():
    """One interpreter runs each script's real imports in turn and names the first that brought torch in."""
    probe = ["import sys", "first = None"]
    for script in TORCH_FREE_SCRIPTS:
        tree = ast.parse((ROOT / "workflow" / "scripts" / script).read_text())
        imports = [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        assert any("saeseeds" in line for line in imports), script
        probe += imports + [f"first = first or ('torch' in sys.modules and {script!r})"]
    probe.append("print(first or 'none')")
    proc = subprocess.run([sys.executable, "-c", "\n".join(probe)], capture_output=True, text=True, env={"PYTHONPATH": str(SRC)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["none"], f"{proc.stdout.strip()} imports torch"


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_the_config_check_every_snakemake_start_runs_imports_no_torch(name):
    """validate_config (common.smk runs it at every Snakemake start, jobs included) checks the trainer's configs
    too, from saeseeds.sae.configs, without torch; a bad trainer key is still named."""
    modules = imported_after(
        "import yaml\nfrom saeseeds.config.validate import validate_config\n"
        f"validate_config(yaml.safe_load(open({str(ROOT / 'config' / name)!r})), {str(ROOT / 'workflow/schemas/config.schema.yaml')!r})"
    )
    assert "saeseeds" in modules and "torch" not in modules
    from saeseeds.config.study import check_training
    from saeseeds.errors import ConfigError

    with pytest.raises(ConfigError, match=r"saes\.x.*device='gpu'"):
        check_training({"saes": {"x": {"num_latents": 8, "k": 2, "device": "gpu"}}, "train": {}})
