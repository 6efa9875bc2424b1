"""The dequantised copy of the embedded model: same tensors and tokens as the GGUF file, rebuilt when damaged,
skipped (not fatal) where it cannot be written."""

import json
import os

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from saeseeds.activations import embedded_copy
from saeseeds.activations.models import EMBEDDED_MODELS, embedded_copy_folder, load_gguf, load_model, load_tokenizer

SOURCE = "embedded:smollm2-135m"
TEXTS = ["In the beginning God created the heaven and the earth.", "def f(x):\n    return x ** 2  # squares",
         "  héllo wörld\t<|im_start|> 😀 ", ""]


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SAESEEDS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_copy_holds_the_gguf_weights_and_tokenizer_bit_for_bit(fresh_cache):
    direct, direct_tok = load_gguf(SOURCE)  # what every load paid before: the GGUF file, dequantised (~11 s)
    folder = embedded_copy_folder(SOURCE)
    assert folder.is_relative_to(fresh_cache) and not folder.exists()
    # the first load builds the copy in the empty cache (from the same GGUF load, to pay it once here), then reads it
    assert embedded_copy.ensure_copy(folder, lambda: (direct, direct_tok), origin=SOURCE) == folder
    assert embedded_copy.is_valid(folder) and (folder / "model.safetensors").is_file()
    model, tok = load_model(SOURCE)
    expected = direct.state_dict()
    got = model.state_dict()
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[name], expected[name]) for name in expected)
    ids = torch.tensor([direct_tok(TEXTS[0]).input_ids])
    assert torch.equal(model(ids).logits, direct(ids).logits)
    for t in (tok, load_tokenizer(SOURCE)):
        assert [t(x).input_ids for x in TEXTS] == [direct_tok(x).input_ids for x in TEXTS]
        assert t.decode(list(range(0, 49152, 997))) == direct_tok.decode(list(range(0, 49152, 997)))
        assert (t.bos_token, t.eos_token, t.pad_token) == (direct_tok.bos_token, direct_tok.eos_token, direct_tok.pad_token)
    half, _ = load_model(SOURCE, dtype="float16")  # other dtypes are cast from the float32 copy
    assert all(torch.equal(half.state_dict()[name], expected[name].half()) for name in expected)


def _tiny_build(tiny_model):
    return lambda: (AutoModelForCausalLM.from_pretrained(tiny_model), AutoTokenizer.from_pretrained(tiny_model))


def test_a_damaged_copy_is_moved_aside_and_rebuilt(tiny_model, tmp_path, capfd):
    folder = tmp_path / "copy"
    built = []

    def build():
        built.append(1)
        return _tiny_build(tiny_model)()

    assert embedded_copy.ensure_copy(folder, build, origin="tiny") == folder and len(built) == 1
    assert embedded_copy.ensure_copy(folder, build, origin="tiny") == folder and len(built) == 1  # valid: reused
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # one flipped bit in a tensor, past the header: loadable, but not the same model
    weights.write_bytes(bytes(data))
    assert not embedded_copy.is_valid(folder)
    assert embedded_copy.ensure_copy(folder, build, origin="tiny") == folder and len(built) == 2
    assert embedded_copy.is_valid(folder)
    assert "failed its checksum" in capfd.readouterr().err
    (aside,) = tmp_path.glob(".copy.damaged-*")
    assert (aside / "model.safetensors").read_bytes() == bytes(data)  # kept for inspection, never read
    manifest = json.loads((folder / embedded_copy.MANIFEST).read_text())
    (folder / embedded_copy.MANIFEST).write_text(json.dumps({**manifest, "format": -1}))  # an older format
    assert not embedded_copy.is_valid(folder)


def test_a_second_writer_keeps_the_first_copy(tiny_model, tmp_path):
    folder = tmp_path / "copy"
    model, tok = _tiny_build(tiny_model)()
    embedded_copy.write_copy(folder, model, tok, origin="tiny")
    first = (folder / embedded_copy.MANIFEST).read_text()
    embedded_copy.write_copy(folder, model, tok, origin="tiny, again")  # as if a job racing the first finished second
    assert (folder / embedded_copy.MANIFEST).read_text() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # no scratch folder left behind


def test_an_unwritable_cache_falls_back_to_the_gguf_file(tmp_path, monkeypatch, capfd):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("SAESEEDS_CACHE", str(blocker))
    _, dist, filename = EMBEDDED_MODELS[SOURCE]
    folder = embedded_copy.copy_folder(dist, "0", filename)
    assert embedded_copy.ensure_copy(folder, lambda: pytest.fail("nothing is built where nothing can be written"),
                                     origin=SOURCE) is None
    assert "cannot keep a copy" in capfd.readouterr().err and os.path.isfile(blocker)
