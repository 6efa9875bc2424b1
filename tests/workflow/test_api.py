"""The notebook front door (`import saeseeds`): the README's example runs as written, without the workflow's packages."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parents[2]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- api-example -->\n```python\n(.*?)```", text, re.S)
    assert match, "README lost its api-example block"
    return match.group(1)


def write_seeds(folder: Path, n: int = 48, d: int = 64) -> None:
    """Four sparsify-layout checkpoints: seeds 1 and 3 are seed 0 permuted with a little noise, seed 2 keeps half of
    seed 0's latents and has new ones for the rest."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(n, d)).astype(np.float32)
    noisy = lambda: base[rng.permutation(n)] + 0.01 * rng.normal(size=(n, d)).astype(np.float32)  # noqa: E731
    variants = [base, noisy(), np.concatenate([base[: n // 2], rng.normal(size=(n - n // 2, d)).astype(np.float32)]), noisy()]
    for seed, w in enumerate(variants):
        out = folder / "ckpt" / f"seed{seed}"
        out.mkdir(parents=True)
        save_file({"encoder.weight": w, "encoder.bias": np.zeros(n, np.float32), "W_dec": w, "b_dec": np.zeros(d, np.float32)},
                  str(out / "sae.safetensors"))
        (out / "cfg.json").write_text(json.dumps({"num_latents": n, "k": 4, "d_in": d}))


def test_readme_example_runs_and_imports_no_workflow_package(tmp_path):
    write_seeds(tmp_path)
    probe = readme_example() + (
        "\nimport sys\nprint('MODULES', sorted({m.split('.')[0] for m in sys.modules} & "
        "{'snakemake', 'zarr', 'transformers', 'altair', 'ot', 'jsonschema', 'datasets'}))\n"
        "print('SHARED', len(reproducible), float(meta['shared_fraction_paper']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line.startswith(("MODULES", "SHARED")))
    assert lines["MODULES"] == "[]"  # `pip install saeseeds` without extras is enough
    reproducible, shared01 = lines["SHARED"].split()
    assert float(shared01) == 1.0  # seed 1 is seed 0 permuted: every latent shared
    assert int(reproducible) == 24  # the half of seed 0 that seed 2 kept
    assert "sparsify (48, 64) (48, 64)" in proc.stdout


def test_version_and_help_answer_without_torch():
    probe = ("import sys\nfrom saeseeds.cli import main\n"
             "try:\n    main(['--version'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
             "import saeseeds\nprint(saeseeds.__version__, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env={"PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 0, proc.stderr
    version_line, last = proc.stdout.splitlines()[0], proc.stdout.splitlines()[-1]
    assert re.fullmatch(r"saeseeds \S+", version_line) and last.endswith("False")
