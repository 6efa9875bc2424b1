"""Shared fixtures: the embedded model is loaded once per session (0.7 s from its copy; 11 s the first time on a machine).

The tests live in one folder per stage of the package (tests/activations for saeseeds.activations, ...;
tests/workflow for the rules end to end). Helpers are imported by module name across folders (the smoke study's
browser test uses tests/browser/test_browser.py's page helpers), so every folder is on the path.
"""

import sys
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from saeseeds.activations.models import load_model

EMBEDDED_MODEL = "embedded:smollm2-135m"

sys.path[:0] = [str(p) for p in sorted(Path(__file__).parent.iterdir()) if p.is_dir() and not p.name.startswith((".", "_")) and p.name != "slurm"]


@pytest.fixture(scope="session")
def smollm():
    """(model, tokenizer) of the embedded SmolLM2-135M, float32 on CPU; tests must not modify it."""
    return load_model(EMBEDDED_MODEL)


@pytest.fixture
def torch_one_thread():
    """Runs a test with one torch thread: on a busy machine, two threads on forwards as small as a
    test's spin at every barrier and run 15-25x slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model(smollm, tmp_path_factory):
    """Folder of a 2-layer random Llama (d = 16) with SmolLM2's tokenizer, where load_model reads it."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tok = smollm[1]
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=2)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


# The longest test files, first: with `-n 2 --dist loadfile --no-loadscope-reorder` (pyproject addopts) a worker
# takes a whole file, and xdist hands out the files in this order as workers ask for work. The smoke study's file
# (~380 s) runs on one worker while the other runs the kill tests (~150 s), the browser, the SLURM cluster (~90 s) and
# the next longest files, so that no long file is left for the end. xdist's own default orders files by how many
# tests they hold, which put the SLURM file beside the smoke study: 511 s of tests on one worker and 421 s on the
# other (8 min 50 s of pytest); in this order 484 s and 489 s (8 min 29 s), `pytest -v --durations=0`, 2026-12-03.
# test_certified.py comes right after the kill tests: its first sparse matching compiles the matching's numba kernels
# (~40 s on one core in a fresh clone) while the other worker is still in the smoke study, and numba's cache then
# serves every later matching of both workers; in the order before (2026-12-04) the two workers reached the matching
# tests together and each compiled them (33.4 and 32.3 s side by side in a fresh clone's suite).
LONG_FILES = ("test_workflow.py", "test_faults.py", "test_certified.py", "test_browser.py", "test_slurm.py",
              "test_embedded_copy.py", "test_bad_input.py", "test_plan.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))  # stable: the rest keep their order
