"""The `saeseeds match` command: reads both checkpoint layouts, writes the matches, prints a summary."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from safetensors.numpy import save_file

from saeseeds.cli import main
from saeseeds.matching.matches_file import read_matches


def write_checkpoint(path, enc, dec, layout):
    path.mkdir(parents=True)
    (path / "cfg.json").write_text(json.dumps({"layout": layout}))
    if layout == "sparsify":
        save_file({"encoder.weight": enc, "W_dec": dec}, str(path / "sae.safetensors"))
    else:
        save_file({"W_enc": np.ascontiguousarray(enc.T), "W_dec": dec}, str(path / "sae_weights.safetensors"))


def test_match_command_on_permuted_saelens_copy(tmp_path, capsys):
    rng = np.random.default_rng(0)
    enc, dec = rng.standard_normal((50, 12)).astype(np.float32), rng.standard_normal((50, 12)).astype(np.float32)
    perm = rng.permutation(50)
    write_checkpoint(tmp_path / "a", enc, dec, "sparsify")
    write_checkpoint(tmp_path / "b", enc[perm], dec[perm], "saelens")
    out = tmp_path / "out" / "m.parquet"
    status = main(["match", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(out), "--threshold", "0.9"])
    assert status == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "100.00% (paper)" in line and "100.00% (notebook)" in line and "certified=yes" in line
    df, meta = read_matches(out)
    np.testing.assert_array_equal(df["enc_partner"], np.argsort(perm))
    assert meta["threshold"] == 0.9 and meta["definition"] == "paper"


def test_match_command_reports_bad_checkpoint_and_exits_2(tmp_path, capsys):
    write_checkpoint(tmp_path / "a", np.ones((4, 3), np.float32), np.ones((4, 3), np.float32), "sparsify")
    status = main(["match", str(tmp_path / "a"), str(tmp_path / "missing"), "-o", str(tmp_path / "m.parquet")])
    assert status == 2
    assert "missing" in capsys.readouterr().err
    assert not (tmp_path / "m.parquet").exists()


def test_console_script_help_lists_match():
    result = subprocess.run(
        [sys.executable, "-m", "saeseeds.cli", "match", "--help"], capture_output=True, text=True, check=True
    )
    assert "--definition" in result.stdout and "--threshold" in result.stdout
