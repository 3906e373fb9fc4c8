"""read_gguf_info on the real starter model and on damaged or hostile files."""
from __future__ import annotations

import os

import pytest

from model_files import (TINY_PARAMS, write_garbage_header, write_huge_array_gguf, write_not_gguf,
                         write_truncated_copy, write_unknown_arch_gguf)
from runtime.errors import ModelFileError
from runtime.models.gguf_info import format_size, param_label, read_gguf_info


def test_starter_model_metadata(starter_model):
    info = read_gguf_info(starter_model)
    assert info.path == str(starter_model)
    assert info.size_bytes == starter_model.stat().st_size
    assert info.architecture == "llama"
    assert 130e6 < info.parameter_count < 140e6
    assert param_label(info.parameter_count) == "135M"
    assert info.file_type == "Q4_1"
    assert info.context_length == 8192
    assert (info.block_count, info.embedding_length) == (30, 576)
    assert (info.head_count, info.head_count_kv) == (9, 3)
    assert info.vocab_size == 49152
    assert info.has_chat_template and "<|im_start|>" in info.chat_template
    assert isinstance(info.bos_token_id, int) and isinstance(info.eos_token_id, int)
    assert info.tensor_count > 30 * 9
    assert info.split_count == 1
    assert "chat_template" not in info.to_dict()


def test_unknown_architecture_is_read_and_type_inferred(tmp_path):
    info = read_gguf_info(write_unknown_arch_gguf(tmp_path))
    assert info.architecture == "flibbertigibbet"
    assert info.name == "tiny-unknown"
    assert info.parameter_count == TINY_PARAMS
    assert info.tensor_count == 3
    assert info.file_type == "F16"  # no general.file_type: the weight matrices decide
    assert info.context_length == 256 and info.head_count_kv == 1
    assert info.has_chat_template


def _error_for(path) -> ModelFileError:
    with pytest.raises(ModelFileError) as caught:
        read_gguf_info(path)
    err = caught.value
    assert err.path == str(path)
    assert err.hint
    return err


def test_text_file_is_not_gguf(tmp_path):
    err = _error_for(write_not_gguf(tmp_path))
    # In words: no Python bytes repr in the message; the first bytes are one click away (Details).
    assert "is not a GGUF file" in err.message and "b'" not in err.message and "This is" not in err.message
    assert "54 68 69 73" in err.facts["details"] and "'This is '" in err.facts["details"]
    # The file is named .gguf: the hint must not tell the person to choose a .gguf file.
    assert "named like a model" in err.message and "choose a .gguf" not in err.hint.lower()


def test_safetensors_gets_a_convert_hint(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes((20).to_bytes(8, "little") + b'{"__metadata__":{}}  ')
    err = _error_for(path)
    assert "safetensors" in err.message and "onvert" in err.hint


def test_truncated_download(starter_model, tmp_path):
    path = write_truncated_copy(starter_model, tmp_path)
    err = _error_for(path)
    assert "is truncated" in err.message
    assert f"{path.stat().st_size:,}" in err.message
    assert "again" in err.hint


def test_absurd_tensor_count(tmp_path):
    err = _error_for(write_garbage_header(tmp_path))
    assert "damaged header" in err.message and "tensors" in err.message


def test_huge_metadata_array_fails_fast(tmp_path):
    err = _error_for(write_huge_array_gguf(tmp_path))
    assert "damaged header" in err.message and "tokenizer.ggml.scores" in err.message


def test_header_cut_inside_metadata(starter_model, tmp_path):
    err = _error_for(write_truncated_copy(starter_model, tmp_path, fraction=0.001))
    assert "damaged header" in err.message
    assert "past the end of the file" in err.message or "more than the file can hold" in err.message


@pytest.mark.parametrize("version", [1, 4])
def test_unsupported_version(tmp_path, version):
    path = tmp_path / "old.gguf"
    path.write_bytes(b"GGUF" + version.to_bytes(4, "little") + bytes(64))
    err = _error_for(path)
    assert f"version {version}" in err.message


def test_folder_missing_and_empty(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"x")
    err = _error_for(tmp_path)
    assert "is a folder" in err.message and "convert" in err.hint
    assert "does not exist" in _error_for(tmp_path / "nope.gguf").message
    empty = tmp_path / "empty.gguf"
    empty.touch()
    assert "empty" in _error_for(empty).message


def test_folder_hint_names_a_gguf_inside(tmp_path):
    inside = write_unknown_arch_gguf(tmp_path)
    assert inside.name in _error_for(tmp_path).hint


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX-only")
def test_named_pipe_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    assert "not a regular file" in _error_for(fifo).message


@pytest.mark.parametrize("n, label", [(None, "?"), (999, "999"), (12_500, "12K"), (135_000_000, "135M"),
                                      (1_240_000_000, "1.2B"), (7_000_000_000, "7B"), (70_550_000_000, "71B")])
def test_param_label(n, label):
    assert param_label(n) == label


@pytest.mark.parametrize("n, text", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"),
                                     (98_654_720, "94.1 MiB"), (3 * 1024**3, "3.0 GiB")])
def test_format_size(n, text):
    assert format_size(n) == text


def _reader_view(path):
    """What the gguf package's own reader finds: scalar/string metadata, array lengths, tensors."""
    from gguf import GGUFReader
    from gguf.constants import GGUFValueType

    reader = GGUFReader(path)
    meta = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        if field.types[0] == GGUFValueType.ARRAY:
            meta[key] = len(field.data)
        else:
            meta[key] = field.contents()
    tensors = [(t.name, [int(d) for d in t.shape], int(t.tensor_type), t.data_offset - reader.data_offset,
                int(t.n_elements), int(t.n_bytes)) for t in reader.tensors]
    return meta, tensors, reader.data_offset


def _our_view(path):
    from runtime.models.gguf_info import _ArrayInfo, _read_header

    header = _read_header(path, path.stat().st_size)
    meta = {k: (v.length if isinstance(v, _ArrayInfo) else len(v) if isinstance(v, list) else v)
            for k, v in header.metadata.items()}
    tensors = [(t.name, t.dims, t.ggml_type, t.offset, t.n_elements, t.n_bytes) for t in header.tensors]
    return meta, tensors, header.data_start


@pytest.mark.parametrize("n_vocab", [16, 6000])  # arrays kept whole, and arrays kept as lengths
def test_header_agrees_with_the_gguf_package_reader(tmp_path, n_vocab):
    path = write_unknown_arch_gguf(tmp_path, n_vocab=n_vocab)
    ours, theirs = _our_view(path), _reader_view(path)
    assert ours[0] == theirs[0]
    assert ours[0]["tokenizer.ggml.tokens"] == n_vocab
    assert ours[1] == theirs[1]
    assert ours[2] == theirs[2]


@pytest.mark.parametrize("cut", [20_000, 300_000, 700_000, 1_100_000])
def test_a_cut_inside_the_vocabulary_lists(starter_model, tmp_path, cut):
    """The token and merge lists (tens of thousands of strings) are stepped over in a fast loop:
    cut inside them, a file reads as damaged and a fetched prefix asks for more bytes."""
    from runtime.models.gguf_info import HeaderIncomplete, read_gguf_header_prefix

    data = starter_model.read_bytes()[:cut]
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(data)
    message = _error_for(truncated).message
    assert "past the end of the file" in message or "more than the file can hold" in message
    with pytest.raises(HeaderIncomplete) as more:
        read_gguf_header_prefix(data, starter_model.stat().st_size, starter_model.name)
    assert cut < more.value.needed <= cut + 8 + 1024
