"""Our GGUF is llama.cpp's GGUF: the same tiny checkpoints converted by llama.cpp's own
convert_hf_to_gguf.py give the same tensors (names, types, shapes, bytes), the same tokenizer arrays
and the same metadata.

llama.cpp's script comes from llama-cpp-python's source distribution (it is not installed with the
wheel). scripts/setup.sh keeps that sdist unpacked in .venv/llama-cpp-sdist (it is what it compiles);
elsewhere, fetch it once:

    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d /tmp/lcpp
    tar xzf /tmp/lcpp/llama_cpp_python-0.3.36.tar.gz -C /tmp/lcpp

or point LLAMA_CPP_CONVERT_SCRIPT at a convert_hf_to_gguf.py. Without it these tests are skipped
(and say so). The script runs in a child process with this venv's torch and transformers.

One patch is applied to it, in the child: the byte-level BPE tokenizers trained for these tests are
unknown to its table of pre-tokenizer fingerprints (a hash of the ids a fixed text encodes to), so
its fingerprint lookup is answered with "qwen2", the pre-tokenizer those tokenizers really use. Our
converter recognises it from tokenizer.json instead; that name is compared too.
"""
from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.compress.convert import convert_checkpoint

RUNNER = """
import runpy, sys
script, pre = sys.argv[1], sys.argv[2]
sys.path.insert(0, str(__import__("pathlib").Path(script).parent))
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
sys.argv = [script] + sys.argv[3:]
runpy.run_path(script, run_name="__main__")
"""


REPO = Path(__file__).resolve().parents[3]


def find_convert_script() -> Path | None:
    """llama.cpp's convert_hf_to_gguf.py: $LLAMA_CPP_CONVERT_SCRIPT, else the sdist scripts/setup.sh
    keeps unpacked in .venv/llama-cpp-sdist, else one unpacked in /tmp/lcpp."""
    named = os.environ.get("LLAMA_CPP_CONVERT_SCRIPT")
    if named:
        return Path(named) if Path(named).is_file() else None
    found = sorted(glob.glob(str(REPO / ".venv/llama-cpp-sdist/*/vendor/llama.cpp/convert_hf_to_gguf.py")))
    found = found or sorted(glob.glob("/tmp/lcpp/*/vendor/llama.cpp/convert_hf_to_gguf.py"))
    return Path(found[-1]) if found else None


SCRIPT = find_convert_script()
pytestmark = pytest.mark.skipif(SCRIPT is None, reason=(
    "llama.cpp's convert_hf_to_gguf.py is not here: pip download --no-deps --no-binary :all: "
    "llama-cpp-python==0.3.36 -d /tmp/lcpp && tar xzf /tmp/lcpp/llama_cpp_python-0.3.36.tar.gz -C /tmp/lcpp "
    "(or set LLAMA_CPP_CONVERT_SCRIPT)"))


def llama_cpp_convert(folder: Path, out: Path, out_type: str, tmp_path: Path) -> Path:
    runner = tmp_path / "run_llama_cpp_convert.py"
    runner.write_text(RUNNER)
    result = subprocess.run([sys.executable, str(runner), str(SCRIPT), "qwen2", str(folder), "--outfile", str(out),
                             "--outtype", out_type], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def _fields(reader) -> dict:
    # workbench.* keys are ours (e.g. the source checkpoint folder): llama.cpp's converter writes none
    return {k: (f.types, f.contents()) for k, f in reader.fields.items() if not k.startswith(("GGUF.", "workbench."))}


@pytest.mark.parametrize("kind, weights, out_type", [
    ("llama", "sharded", "q8_0"),      # SentencePiece, Q/K permutation, shards with an index
    ("qwen2", "bin", "f16"),           # byte-level BPE, biases, tied embeddings, pytorch_model.bin
    ("qwen3", "safetensors", "bf16"),  # Q/K norms, chat_template.jinja
    ("phi3", "safetensors", "f32"),    # fused QKV and gate/up, Phi-3's added-token rules
])
def test_same_gguf_as_llama_cpps_converter(tiny_checkpoint, tmp_path, kind, weights, out_type):
    import gguf

    folder = tiny_checkpoint(kind, weights)
    ours = gguf.GGUFReader(convert_checkpoint(folder, tmp_path / "ours.gguf", out_type=out_type))
    theirs = gguf.GGUFReader(llama_cpp_convert(folder, tmp_path / "theirs.gguf", out_type, tmp_path))

    assert [t.name for t in ours.tensors] == [t.name for t in theirs.tensors]
    for a, b in zip(ours.tensors, theirs.tensors):
        assert (a.tensor_type, list(a.shape)) == (b.tensor_type, list(b.shape)), a.name
        assert np.array_equal(np.asarray(a.data).view(np.uint8), np.asarray(b.data).view(np.uint8)), a.name

    ours_fields, theirs_fields = _fields(ours), _fields(theirs)
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.scores",
                "tokenizer.ggml.merges", "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.chat_template"):
        assert ours_fields.get(key) == theirs_fields.get(key), key
    assert ours_fields == theirs_fields  # every key, its type and value (general.name included)
