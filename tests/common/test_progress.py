"""Live progress: inside a rule log, progress bars keep their full text in the log and echo short lines to the terminal."""

import re

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from saeseeds.activations.caching import ActivationConfig, write_activations_multi
from saeseeds.common.logs import rule_log
from saeseeds.common.progress import ProgressBar, job_label, progress_line

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(autouse=True)
def local_run(monkeypatch):
    """A local run: not under SLURM, echo not turned off."""
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SAESEEDS_PROGRESS", raising=False)


def test_job_label_is_the_log_path_under_logs():
    assert job_label("logs/train/m/d/layers.6.mlp/topk-1k/seeds_0_1.log") == "train/m/d/layers.6.mlp/topk-1k/seeds_0_1"
    assert job_label("/tmp/x/logs/match/m/d/h/s/seed0-seed1.log") == "match/m/d/h/s/seed0-seed1"


def test_progress_line_gives_count_rate_and_eta_then_the_time_taken():
    assert progress_line("train/x", "train topk", 100, 400, "step", 10.0, 10.0) == (
        "[train/x] train topk: 100/400 step (25%), 10.0 step/s, ETA 00:30\n"
    )
    assert progress_line("a", "activations", 4096, 4096, "tok", 512.0, 8.0, done=True).endswith(
        "4,096/4,096 tok (100%), 512.0 tok/s, done in 00:08\n"
    )
    assert progress_line("a", "tokenizing", 0, 100, "tok", 0.0, 0.0) == "[a] tokenizing: 0/100 tok (0%), started\n"
    assert "stopped after 00:08" in progress_line("a", "activations", 100, 4096, "tok", 12.5, 8.0, done=True)


def test_caching_job_logs_its_full_bar_and_echoes_short_lines_to_the_terminal(tmp_path, capfd):
    """A caching job (write_activations_multi) inside rule_log: the log has the bar and the messages, the
    terminal (the stderr rule_log replaced) one line per update, prefixed by the job, ending with `done`."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2)).eval()
    ids = torch.randint(0, 64, (8, 32))
    cfg = ActivationConfig(max_tokens=256, heldout_tokens=64, context_length=32, batch_size=2)
    log_path = tmp_path / "logs" / "activations" / "m" / "d" / "layers.1.log"
    with rule_log(log_path, progress_every=0) as log:
        write_activations_multi({"layers.1": tmp_path / "acts.zarr"}, model, ids, cfg=cfg, attrs={"model": "tiny", "revision": "main", "dataset": "random"}, log=log)
    terminal = capfd.readouterr().err.splitlines()
    assert len(terminal) >= 2, terminal
    pattern = r"\[activations/m/d/layers\.1\] activations layers\.1: [\d,]+/256 tok \(\d+%\), [\d,.]+ tok/s, (ETA|done in) [\d:]+|.*: 0/256 tok \(0%\), started"
    assert all(re.fullmatch(pattern, line) for line in terminal), terminal
    assert terminal[0] == "[activations/m/d/layers.1] activations layers.1: 0/256 tok (0%), started"
    assert terminal[-1].split(": ", 1)[1].startswith("256/256 tok (100%)") and "done in" in terminal[-1]
    text = log_path.read_text()
    assert "256/256" in text and "256 tokens of layers.1" in text  # the tqdm bar and the job's own message
    assert "[activations/" not in text  # the short lines are for the terminal only


def test_lines_are_rate_limited_and_off_under_slurm(tmp_path, capfd, monkeypatch):
    with rule_log(tmp_path / "logs" / "x.log", progress_every=3600):
        with ProgressBar(total=50, desc="work", unit="it", mininterval=0) as bar:
            for _ in range(50):
                bar.update(1)
    lines = capfd.readouterr().err.splitlines()
    assert [line.split(": ", 1)[1].split(",")[0] for line in lines] == ["0/50 it (0%)", "50/50 it (100%)"]
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    with rule_log(tmp_path / "logs" / "y.log", progress_every=0):
        with ProgressBar(total=5, desc="work", unit="it", mininterval=0) as bar:
            bar.update(5)
    assert capfd.readouterr().err == ""
    assert "5/5" in (tmp_path / "logs" / "y.log").read_text()


def test_no_echo_outside_a_rule_log(capfd):
    """The CLI and tests: only tqdm's own bar on stderr, no prefixed terminal lines."""
    with ProgressBar(total=3, desc="plain", unit="it", mininterval=0) as bar:
        bar.update(3)
    err = capfd.readouterr().err
    assert "3/3" in err and not re.search(r"^\[[^\]]*\] plain:", err, re.M)
