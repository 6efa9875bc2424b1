"""Shared fixtures: the embedded model is loaded once per session (about 20 s on 2 cores)."""

import pytest
import torch

from saeseeds.models import load_model

EMBEDDED_MODEL = "embedded:smollm2-135m"


@pytest.fixture(scope="session")
def smollm():
    """(model, tokenizer) of the embedded SmolLM2-135M, float32 on CPU; tests must not modify it."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return load_model(EMBEDDED_MODEL)
