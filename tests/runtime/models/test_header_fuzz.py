"""Fuzzed header figures (issue 6): the reader, the fit estimate and `workbench info` stay sane.

Real GGUF files are written with the ``gguf`` package; the tensors stay those of the tiny model
(8-wide embedding, 16 tokens, one layer), only the stated figures change. The checks are the
``check_stated_figures`` fixture (conftest.py), also run on fixed cases in test_header_figures.py.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from gguf import GGUFValueType as T  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from model_files import write_unknown_arch_gguf  # noqa: E402

FIELDS = ("{arch}.context_length", "{arch}.vocab_size", "{arch}.block_count", "{arch}.embedding_length",
          "{arch}.attention.head_count", "{arch}.attention.head_count_kv", "{arch}.attention.key_length",
          "{arch}.attention.value_length", "general.file_type", "split.count",
          "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id")

INT_RANGES = {T.UINT8: (0, 2**8 - 1), T.INT8: (-2**7, 2**7 - 1), T.UINT16: (0, 2**16 - 1),
              T.INT16: (-2**15, 2**15 - 1), T.UINT32: (0, 2**32 - 1), T.INT32: (-2**31, 2**31 - 1),
              T.UINT64: (0, 2**64 - 1), T.INT64: (-2**63, 2**63 - 1)}
EDGES = (-2**63, -2**31, -1, 0, 1, 2, 7, 8, 16, 4096, 2**31 - 1, 2**32 - 1, 2**40, 2**63, 2**64 - 1)


def _ints(vtype):
    lo, hi = INT_RANGES[vtype]
    edges = [v for v in EDGES if lo <= v <= hi]
    return st.tuples(st.just(vtype), st.sampled_from(edges) | st.integers(lo, hi))


INTS = st.sampled_from(list(INT_RANGES)).flatmap(_ints)
WRONG_TYPES = st.one_of(
    st.tuples(st.just(T.FLOAT32), st.floats(width=32)),
    st.tuples(st.just(T.FLOAT64), st.floats()),
    st.tuples(st.just(T.BOOL), st.booleans()),
    st.tuples(st.just(T.STRING), st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)),
    st.tuples(st.just(T.ARRAY), st.tuples(st.just(T.INT64), st.lists(st.sampled_from(EDGES[:-2]), min_size=1,
                                                                     max_size=4))),
)
HEADERS = st.fixed_dictionaries({key: st.none() | INTS | INTS | WRONG_TYPES for key in FIELDS})

@settings(max_examples=50, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(header=HEADERS)
def test_stated_figures_never_break_info_or_fit(header, check_stated_figures):
    with tempfile.TemporaryDirectory() as folder:
        check_stated_figures(write_unknown_arch_gguf(Path(folder), name="fuzz", header=header))
