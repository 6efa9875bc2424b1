"""`gguf_parsed_once`: one parse of a GGUF file and one tensor-name map for all of transformers' reads, undone after."""

import gguf
import numpy as np

from saeseeds.activations.models import gguf_parsed_once


def tiny_gguf(path):
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_token_list(["a", "b", "c"])
    writer.add_tensor("token_embd.weight", np.arange(12, dtype=np.float32).reshape(3, 4))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_file_is_parsed_once_within_the_block_and_afresh_after(tmp_path):
    path = tiny_gguf(tmp_path / "tiny.gguf")
    reader_class, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    with gguf_parsed_once():
        first = gguf.GGUFReader(path)
        assert gguf.GGUFReader(str(path)) is first  # the same file by another spelling
        assert isinstance(first, reader_class)
        assert first.fields["tokenizer.ggml.tokens"].contents() == ["a", "b", "c"]
        np.testing.assert_array_equal(first.tensors[0].data, np.arange(12, dtype=np.float32).reshape(3, 4))
        other = tiny_gguf(tmp_path / "other.gguf")
        assert gguf.GGUFReader(other) is not first
        arch = gguf.MODEL_ARCH.LLAMA
        assert gguf.get_tensor_name_map(arch, 2) is gguf.get_tensor_name_map(arch, 2)
    assert gguf.GGUFReader is reader_class and gguf.get_tensor_name_map is name_map
    assert gguf.GGUFReader(path) is not first
    assert gguf.get_tensor_name_map(arch, 2) is not gguf.get_tensor_name_map(arch, 2)
