"""Bad input to the converter: a clear ConversionError, raised before anything is written, and never
a partial file left behind (also on cancel and on a disk that fills up while writing)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from runtime.compress.convert import convert_checkpoint, plan_conversion
from runtime.errors import Cancelled, ConversionError
from runtime.jobs import CancelToken


@pytest.fixture
def out_dir(tmp_path):
    path = tmp_path / "out"
    path.mkdir()
    return path


def refused(folder, out_dir, **kwargs) -> ConversionError:
    """Convert, expect ConversionError, and check that the destination folder is still empty."""
    with pytest.raises(ConversionError) as caught:
        convert_checkpoint(folder, out_dir / "model.gguf", **kwargs)
    assert list(out_dir.iterdir()) == []
    return caught.value


def _edit_json(path, edit):
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_unsupported_architecture_names_the_supported_ones(copy_checkpoint, out_dir):
    folder = copy_checkpoint("llama")
    _edit_json(folder / "config.json", lambda c: c.update(architectures=["MambaForCausalLM"]))
    err = refused(folder, out_dir)
    assert "MambaForCausalLM is not an architecture this converter handles" in err.message
    for name in ("Llama", "Qwen2", "Qwen3", "Phi-3", "LlamaForCausalLM", "MistralForCausalLM"):
        assert name in err.message
    assert "GGUF" in err.hint


def test_config_without_architectures(copy_checkpoint, out_dir):
    folder = copy_checkpoint("qwen2")
    _edit_json(folder / "config.json", lambda c: c.pop("architectures"))
    assert "does not name the model's architecture" in refused(folder, out_dir).message


@pytest.mark.parametrize("damage, words", [
    (lambda f: (f / "config.json").unlink(), "no config.json"),
    (lambda f: (f / "model.safetensors").unlink(), "no model weights"),
    (lambda f: (f / "tokenizer.json").unlink(), "no tokenizer"),
    (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:5000]), "truncated"),
])
def test_missing_and_damaged_files(copy_checkpoint, out_dir, damage, words):
    folder = copy_checkpoint("qwen2")
    damage(folder)
    assert words in refused(folder, out_dir).message


def test_truncated_shard_and_bad_index(copy_checkpoint, out_dir):
    folder = copy_checkpoint("llama", "sharded")
    shard = sorted(folder.glob("model-*.safetensors"))[3]
    shard.write_bytes(shard.read_bytes()[:-1])
    err = refused(folder, out_dir)
    assert shard.name in err.message and "truncated" in err.message
    (folder / "model.safetensors.index.json").write_text("{}")
    assert "weight_map" in refused(folder, out_dir).message


def test_quantized_checkpoint(copy_checkpoint, out_dir):
    folder = copy_checkpoint("llama")
    _edit_json(folder / "config.json", lambda c: c.update(
        quantization_config={"quant_method": "awq", "bits": 4, "group_size": 128}))
    err = refused(folder, out_dir)
    assert "already quantized with AWQ" in err.message and "original" in err.hint


def test_a_folder_that_is_not_a_checkpoint(tmp_path, out_dir):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"\xff\xd8\xff")
    err = refused(folder, out_dir)
    assert "not a Hugging Face checkpoint" in err.message and "config.json" in err.hint


def test_tokenizer_and_weights_that_do_not_belong_together(copy_checkpoint, out_dir):
    folder = copy_checkpoint("llama")
    _edit_json(folder / "config.json", lambda c: c.update(vocab_size=600))
    err = refused(folder, out_dir)
    assert "token embedding has 502 rows" in err.message and "600 tokens" in err.message


def test_pre_tokenizer_llama_cpp_would_not_know(copy_checkpoint, out_dir):
    folder = copy_checkpoint("qwen2")
    _edit_json(folder / "tokenizer.json",
               lambda t: t.update(pre_tokenizer={"type": "Whitespace"}))
    err = refused(folder, out_dir)
    assert "splits text in a way this converter does not know" in err.message and "Whitespace" in err.message
    assert "convert_hf_to_gguf.py" in err.hint


def test_a_tensor_llama_cpp_has_no_place_for(copy_checkpoint, out_dir):
    import torch
    from safetensors.torch import load_file, save_file

    folder = copy_checkpoint("llama")
    tensors = load_file(folder / "model.safetensors")
    tensors["model.layers.0.self_attn.gate_proj.weight"] = torch.zeros(4, 64)
    save_file(tensors, folder / "model.safetensors")
    err = refused(folder, out_dir)
    assert "model.layers.0.self_attn.gate_proj.weight" in err.message and "no place for" in err.message


def test_a_missing_layer(copy_checkpoint, out_dir):
    from safetensors.torch import load_file, save_file

    folder = copy_checkpoint("qwen2")
    tensors = {k: v for k, v in load_file(folder / "model.safetensors").items() if ".layers.1." not in k}
    save_file(tensors, folder / "model.safetensors")
    assert "Layer 1 of 2 is missing" in refused(folder, out_dir).message


def test_heads_that_do_not_divide_the_projection(copy_checkpoint, out_dir):
    folder = copy_checkpoint("llama")
    _edit_json(folder / "config.json", lambda c: c.update(num_attention_heads=5))
    assert "does not split into 5 heads" in refused(folder, out_dir).message


def test_unknown_output_type_and_missing_destination(tiny_checkpoint, tmp_path, out_dir):
    err = refused(tiny_checkpoint("qwen2"), out_dir, out_type="q4_k_m")
    assert "q4_k_m" in err.message and "f16" in err.hint and "quantize" in err.hint
    with pytest.raises(ConversionError, match="does not exist"):
        convert_checkpoint(tiny_checkpoint("qwen2"), tmp_path / "no" / "such" / "x.gguf")


# --- disk space, cancel ------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A real 8 MiB file system (tmpfs) when this process may mount one (root on Linux), else None."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("mount") is None:
        yield None
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
                          capture_output=True)
    if done.returncode != 0:
        yield None
        return
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], capture_output=True)


def test_not_enough_disk_space_is_checked_before_starting(tiny_checkpoint, small_disk, monkeypatch, out_dir):
    folder = tiny_checkpoint("qwen2")
    needed = plan_conversion(folder, "f32").expected_bytes
    if small_disk is None:  # no file system small enough can be made here: report 1 MiB free
        import runtime.compress.convert as convert

        real = shutil.disk_usage
        monkeypatch.setattr(convert.shutil, "disk_usage",
                            lambda p: real(p)._replace(free=1 << 20))
        target = out_dir
    else:
        target = small_disk
    with pytest.raises(ConversionError) as caught:
        convert_checkpoint(folder, target / "model.gguf", out_type="f32")
    err = caught.value
    assert "Not enough free disk space" in err.message and err.facts["needed_bytes"] == needed
    assert "Free at least" in err.hint
    assert list(target.iterdir()) == []


def test_a_disk_that_fills_up_while_writing_leaves_nothing(tiny_checkpoint, small_disk):
    if small_disk is None:
        pytest.skip("needs a real small file system (tmpfs), which only root can mount here")
    folder = tiny_checkpoint("llama")

    def fill_the_disk(done, total, message):
        if done == 1:  # the output is open and its header written: now take the rest of the space
            with open(small_disk / "filler", "wb") as fh:
                try:
                    while True:
                        fh.write(b"\0" * (1 << 16))
                except OSError:
                    pass

    import runtime.compress.convert as convert

    convert.DISK_MARGIN_BYTES, margin = 0, convert.DISK_MARGIN_BYTES
    try:
        with pytest.raises(ConversionError) as caught:
            convert_checkpoint(folder, small_disk / "model.gguf", out_type="f32", progress=fill_the_disk)
    finally:
        convert.DISK_MARGIN_BYTES = margin
    assert "disk filled up" in caught.value.message
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_cancel_removes_the_partial_file_and_keeps_an_older_output(tiny_checkpoint, tmp_path):
    folder = tiny_checkpoint("llama", "sharded")
    out = tmp_path / "model.gguf"
    out.write_bytes(b"an older conversion")
    cancel = CancelToken()
    seen = []

    def progress(done, total, message):
        seen.append((done, total))
        if done == 5:
            assert any(p.name.endswith(".partial") for p in tmp_path.iterdir())  # writing under another name
            cancel.cancel()

    with pytest.raises(Cancelled):
        convert_checkpoint(folder, out, out_type="f16", progress=progress, cancel=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.gguf"]
    assert out.read_bytes() == b"an older conversion"
    assert seen[-1] == (5, 21)


def test_progress_counts_every_tensor(tiny_checkpoint, tmp_path):
    seen = []
    convert_checkpoint(tiny_checkpoint("qwen2"), tmp_path / "q.gguf", progress=lambda *a: seen.append(a))
    counts = [(d, t) for d, t, _ in seen if t]
    assert counts == [(i, 26) for i in range(1, 27)] + [(26, 26)]
    assert "blk.0.attn_q.weight (F16)" in [m for _, _, m in seen]


def test_an_already_cancelled_token_writes_nothing(tiny_checkpoint, out_dir):
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        convert_checkpoint(tiny_checkpoint("qwen2"), out_dir / "x.gguf", cancel=cancel)
    assert list(out_dir.iterdir()) == []
