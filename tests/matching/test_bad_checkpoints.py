"""Bad external checkpoints: one line naming the culprit, exit status 2, nothing written (`saeseeds stability`)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from saeseeds.cli import main as cli_main

N, D = 10, 6


def good(path, d=D, n=N, seed=0):
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    (path / "cfg.json").write_text(json.dumps({"d_in": d, "num_latents": n}))
    save_file({"encoder.weight": rng.standard_normal((n, d)).astype(np.float32),
               "W_dec": rng.standard_normal((n, d)).astype(np.float32)}, str(path / "sae.safetensors"))
    return str(path)


class NotWeights:
    """Any object: unpickling it could run code, so a weights-only load must refuse it."""

    def __init__(self):
        self.w = torch.zeros(N, D)


def no_weights(path):
    path.mkdir()
    (path / "notes.txt").write_text("trained on a GPU")
    (path / "config.json").write_text("{}")
    return str(path)


def pickled_module(path):
    from dictionary_learning import AutoEncoder

    path.mkdir()
    torch.save(AutoEncoder(D, N), path / "ae.pt")  # the whole module pickled, not its state dict
    (path / "config.json").write_text(json.dumps({"trainer": {"activation_dim": D, "dict_size": N}}))
    return str(path)


def plain_pickle(path):
    path.mkdir()
    (path / "ae.pt").write_bytes(pickle.dumps({"encoder.weight": NotWeights()}))
    return str(path)


CASES = {
    "folder with no weights": (no_weights, "no known checkpoint layout: neither sae.safetensors (sparsify)", "found: config.json, notes.txt"),
    "pickled module": (pickled_module, "ae.pt: not a weights-only torch file: torch.load(weights_only=True) refused it", None),
    "plain pickle": (plain_pickle, "ae.pt: not a", "torch.load(weights_only=True) refused it"),
    "hub reference offline": (  # a repo that does not exist either: the same one line online and offline
        lambda p: "hf://saeseeds-tests/no-such-sae@v1/layers.1", "hf://saeseeds-tests/no-such-sae@v1/layers.1: cannot fetch from the Hugging Face hub", None),
    "hub reference without a revision": (lambda p: "hf://EleutherAI/sae-pythia-70m-32k/layers.1", "not a hub reference of the form hf://owner/repo@revision/path", None),
    "d_in differs": (lambda p: good(p, d=D + 2, seed=3), "has d_in=8 but", "has d_in=6: SAEs of different sites cannot be matched"),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_bad_checkpoint_fails_in_one_line_with_status_2_and_writes_nothing(tmp_path, capsys, case, suffix):
    make, first, second = CASES[case]
    a, b = good(tmp_path / "a"), good(tmp_path / "b", seed=1)
    bad = make(tmp_path / "bad")
    out = tmp_path / "out" / f"table{suffix}"
    assert cli_main(["stability", a, b, bad, "-o", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("saeseeds stability: error: "), lines
    assert first in lines[0] and (second is None or second in lines[0]), lines[0]
    # Checked before any matching: no pair was printed, no table, no sources file, no temporary left.
    assert captured.out == ""
    assert not (tmp_path / "out").exists()


def test_output_suffix_other_than_parquet_or_csv_is_refused_before_any_work(tmp_path, capsys):
    a, b = good(tmp_path / "a"), good(tmp_path / "b", seed=1)
    assert cli_main(["stability", a, b, "-o", str(tmp_path / "t.xlsx")]) == 2
    assert "must end in .parquet or .csv" in capsys.readouterr().err
