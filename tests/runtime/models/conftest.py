"""The checks shared by the header-figure tests (test_header_figures.py, test_header_fuzz.py)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app.cli import main
from runtime.models import gguf_info
from runtime.models.gguf_info import read_gguf_info
from runtime.models.hardware import DEFAULT_N_CTX, check_fit, default_fit_context

MiB, GiB = 1024**2, 1024**3

LIMITS = {"context_length": gguf_info.MAX_CONTEXT, "block_count": gguf_info.MAX_BLOCKS,
          "embedding_length": gguf_info.MAX_EMBEDDING, "head_count": gguf_info.MAX_HEADS,
          "head_count_kv": gguf_info.MAX_HEADS, "key_length": gguf_info.MAX_EMBEDDING,
          "value_length": gguf_info.MAX_EMBEDDING, "vocab_size": gguf_info.MAX_VOCAB,
          "split_count": gguf_info.MAX_SPLITS}


@pytest.fixture
def check_stated_figures(capsys):
    """A function that checks a model made by ``write_unknown_arch_gguf`` with odd header figures:
    read_gguf_info, the fit estimate and `workbench info` never crash, never show a negative number
    or an absurd size, and give a sane value or say unknown."""
    return lambda path: _check(path, capsys)


def _check(path: Path, capsys) -> None:
    info = read_gguf_info(path)  # the stated figures never make the file unreadable
    for field, limit in LIMITS.items():
        value = getattr(info, field)
        assert value is None or 1 <= value <= limit, (field, value)
    for field in ("bos_token_id", "eos_token_id"):
        assert getattr(info, field) is None or 0 <= getattr(info, field) < 16
    # What the tensors show wins: 8-wide embedding, 16 tokens, one layer.
    assert (info.embedding_length, info.vocab_size) == (8, 16)
    if info.split_count == 1:
        assert info.block_count == 1

    n_ctx = default_fit_context(info)
    assert 1 <= n_ctx <= DEFAULT_N_CTX
    fit = check_fit(info, n_ctx, available_bytes=16 * GiB)
    # A 2 KiB model: tens of MiB (the fixed buffers); a shard whose layers cannot all be seen, a few GiB.
    assert info.size_bytes < fit.needed_bytes < (256 * MiB if info.split_count == 1 else 8 * GiB)

    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    lines = dict(line.split(":", 1) for line in out.splitlines())
    for key, value in lines.items():
        if key not in ("Name", "Path"):
            assert not re.search(r"(?<![\w.])-\d", value), (key, value)  # no negative number
    context = lines["Context length"].strip()
    assert context == "unknown" or 1 <= int(context.replace(",", "")) <= gguf_info.MAX_CONTEXT
    assert ("context length is unknown" in lines["Memory"]) == (context == "unknown")
    assert "TiB" not in lines["Memory"]

    assert main(["info", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["fit"]["n_ctx"] == n_ctx and data["fit"]["needed_bytes"] == fit.needed_bytes
