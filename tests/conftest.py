"""Shared fixtures: the embedded model is loaded once per session (about 20 s on 2 cores)."""

import pytest
import torch

from saeseeds.models import load_model

EMBEDDED_MODEL = "embedded:smollm2-135m"


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
