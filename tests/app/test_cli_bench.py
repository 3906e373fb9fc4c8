"""`workbench bench` on real tiny variants: the --json objects, a failed row, bad options, history."""
from __future__ import annotations

import json
from pathlib import Path

from app.cli import main

QUICK = ["--threads", "2", "--ctx", "64", "--prompt-tokens", "32", "--gen-tokens", "8", "--reps", "1"]
KEYS = {"size_bytes", "load_s", "pp_tokens_per_s", "tg_tokens_per_s", "ttft_s", "peak_rss_bytes"}


def test_json_with_quality(tiny_variants, short_text, capsys):
    assert main(["bench", str(tiny_variants["Q4_0"]), str(tiny_variants["F16"]), *QUICK, "--quality",
                 "--text", str(short_text), "--json"]) == 0
    captured = capsys.readouterr()
    q4, f16 = json.loads(captured.out)
    for row in (q4, f16):
        assert KEYS <= row.keys() and all(row[k] > 0 for k in KEYS) and row["status"] == "ok"
    assert (f16["kld_mean"], f16["kld_p99"], f16["top1_agreement"]) == (0, 0, 1)
    assert q4["kld_mean"] > 0 and 0 < q4["top1_agreement"] < 1 and q4["perplexity"] > 1
    assert "F16" in captured.err and "tiny-Q4_0.gguf: pp" in captured.err   # per-model lines and the summary
    from runtime.store.bench_runs import BenchStore

    with BenchStore() as store:
        assert len(store.list_runs()) == 1


def test_table_and_a_failed_row(tiny_variants, tmp_path, capsys):
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(Path(tiny_variants["Q8_0"]).read_bytes()[:4000])
    assert main(["bench", str(tiny_variants["Q8_0"]), str(bad), *QUICK]) == 2
    out = capsys.readouterr().out
    assert "tg t/s" in out and "cut.gguf" in out and "failed:" in out


def test_text_without_quality_is_refused(tiny_variants, short_text, capsys):
    assert main(["bench", str(tiny_variants["F16"]), "--text", str(short_text)]) == 2
    assert "only apply with --quality" in capsys.readouterr().err


def test_impossible_options_are_refused_before_running(tiny_variants, capsys):
    assert main(["bench", str(tiny_variants["F16"]), "--threads", "100000"]) == 2
    assert "threads" in capsys.readouterr().err
