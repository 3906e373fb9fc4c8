"""The original checkpoint as PyTorch rows (runtime/bench/torch_rows.py and torch_child.py), on a real
tiny random llama checkpoint (tests/tiny_checkpoints.py) and GGUFs converted from it by the app:
speed figures, size in memory, KLD against the FP32 original in the order the precisions promise,
the GGUFs scored against the real original, refusals in words, and Cancel."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from quantize_models import reference_quantize
from tiny_checkpoints import build_checkpoint
from runtime.bench import torch_rows
from runtime.bench.results import BenchRun, SpeedOptions
from runtime.bench.run import run_benchmark
from runtime.errors import BenchError, Cancelled, InsufficientMemoryError
from runtime.jobs import CancelToken

QUICK = SpeedOptions(threads=2, n_ctx=64, prompt_tokens=32, gen_tokens=8, reps=1, warmup=False)
N_CTX = 64


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> dict:
    """{"folder": the tiny llama checkpoint (FP32 safetensors), "F16"/"Q8_0": GGUFs made from it}."""
    from runtime.compress.convert import convert_checkpoint

    root = tmp_path_factory.mktemp("torch-original")
    folder = build_checkpoint("llama", root / "tiny-llama")
    f16 = convert_checkpoint(folder, root / "tiny-llama-F16.gguf", out_type="f16")
    return {"folder": folder, "F16": f16, "Q8_0": reference_quantize(f16, root / "tiny-llama-Q8_0.gguf", "Q8_0")}


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    """The start of the shipped text: about 540 tokens of the tiny vocabulary, 8 windows of 64."""
    from runtime.bench.quality import default_text_path

    path = tmp_path_factory.mktemp("torch-text") / "short.txt"
    path.write_text(default_text_path().read_text(encoding="utf-8")[:800], encoding="utf-8")
    return path


def test_the_pytorch_rows_run_and_int8_is_smaller_in_memory(original):
    measured = {p: torch_rows.measure_torch_speed(original["folder"], p, QUICK) for p in ("fp32", "bf16", "int8")}
    for result in measured.values():
        s = result.figures
        assert s.load_s > 0 and s.pp_tokens_per_s.median > 0 and s.tg_tokens_per_s.median > 0
        assert 0 < s.ttft_s.median < 60 and s.peak_rss_bytes > 0 and s.threads == 2
    fp32, bf16, int8 = (measured[p].memory_bytes for p in ("fp32", "bf16", "int8"))
    params = torch_rows.check_checkpoint(original["folder"]).parameter_count
    assert fp32 == 4 * params and bf16 == 2 * params
    assert int8 < fp32 / 2   # the Linear weights take one byte, the embeddings stay FP32


def test_dynamic_int8_stores_the_linear_weights_in_a_quarter_of_the_bytes(original):
    import torch
    from transformers import AutoModelForCausalLM

    from runtime.bench.torch_child import memory_bytes, quantize_dynamic_int8

    model = AutoModelForCausalLM.from_pretrained(original["folder"], dtype=torch.float32)
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    linear_fp32 = sum(m.weight.numel() * 4 for m in linear)
    others = memory_bytes(model) - linear_fp32 - sum(m.bias.numel() * 4 for m in linear if m.bias is not None)
    quantized = quantize_dynamic_int8(model)
    linear_int8 = memory_bytes(quantized) - others
    assert linear_int8 == pytest.approx(linear_fp32 / 4, rel=0.02)


def test_kld_against_the_fp32_original_orders_fp32_bf16_int8_and_the_ggufs_are_close(original, text, workbench_home):
    from runtime.store.bench_runs import BenchStore

    with BenchStore() as store:
        run = run_benchmark([original["F16"], original["Q8_0"]], QUICK, quality=True, text_path=text,
                            original=original["folder"], store=store)
        kept = BenchRun.from_dict(store.load_run(run.run_id))
    fp32, bf16, int8, f16, q8 = run.results
    folder = str(Path(original["folder"]).resolve())
    assert run.reference_path == folder
    assert [r.engine for r in run.results] == ["pytorch"] * 3 + ["llama.cpp"] * 2
    assert [r.quant for r in run.results[:3]] == ["FP32", "BF16", "INT8 (dynamic)"]
    assert [r.name for r in run.results[:3]] == [f"tiny-llama PyTorch {p}" for p in ("FP32", "BF16", "INT8")]
    assert all(r.status == "ok" and r.path == folder for r in run.results[:3])
    assert fp32.quality.is_reference and fp32.quality.kld_mean == 0 and fp32.quality.top1_agreement == 1
    # Each precision loses more than the one above it; half precision (7 mantissa bits) far less than INT8.
    assert 0 < bf16.quality.kld_mean < int8.quality.kld_mean / 5
    assert bf16.quality.top1_agreement > int8.quality.top1_agreement
    # llama.cpp's F16 (10 mantissa bits) and Q8_0 (blocks of 32) of the same weights, against the real original.
    assert 0 < f16.quality.kld_mean < bf16.quality.kld_mean / 5 and f16.quality.top1_agreement > 0.97
    assert 0 < q8.quality.kld_mean < int8.quality.kld_mean and q8.quality.perplexity > 1
    assert f16.quality.tokens_scored == fp32.quality.tokens_scored == int8.quality.tokens_scored > 0
    assert int8.size_bytes < bf16.size_bytes < fp32.size_bytes
    # Three rows sharing one path are stored and read back as they were.
    assert [(r.path, r.name, r.quant, r.size_bytes, r.engine) for r in kept.results] == \
        [(r.path, r.name, r.quant, r.size_bytes, r.engine) for r in run.results]
    assert kept.results[2].quality.kld_mean == int8.quality.kld_mean


def test_a_gguf_names_the_checkpoint_it_was_converted_from(original):
    folder = Path(original["folder"]).resolve()
    assert torch_rows.source_checkpoint_of(original["F16"]) == folder
    assert torch_rows.source_checkpoint_of(original["Q8_0"]) == folder   # llama.cpp's quantizer kept the key
    assert torch_rows.find_original([original["Q8_0"], original["F16"]]) == folder


def test_a_tokenizer_that_splits_the_text_differently_is_refused_with_where(original, text, tmp_path):
    changed = tmp_path / "other-tokenizer"
    shutil.copytree(original["folder"], changed)
    tokenizer = json.loads((changed / "tokenizer.json").read_text(encoding="utf-8"))
    merges = tokenizer["model"]["merges"]
    tokenizer["model"]["merges"] = merges[: len(merges) // 2]   # same vocabulary, fewer merges
    (changed / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")

    with pytest.raises(BenchError, match="split the evaluation text differently") as caught:
        torch_rows.prepare_torch_reference(changed, text, vocab_gguf=original["F16"], n_ctx=N_CTX, threads=2)
    error = caught.value
    assert "agree on the first" in error.message and "llama.cpp has [" in error.message
    assert "transformers has [" in error.message and "convert" in error.hint
    assert error.facts["position"] >= 0 and error.facts["llama_cpp_tokens"] != error.facts["transformers_tokens"]

    # In a run, every row keeps its speed and says why it has no quality figures.
    run = run_benchmark([original["F16"]], QUICK, quality=True, text_path=text, original=changed,
                        original_precisions=["fp32"])
    for row in run.results:
        assert row.status == "ok" and row.speed is not None and row.quality is None
        assert "split the evaluation text differently" in row.note


def test_a_folder_that_is_not_a_checkpoint_is_refused_in_words(original, tmp_path):
    notes = tmp_path / "my-notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("not a model")
    with pytest.raises(BenchError, match="cannot be measured as the original model in PyTorch") as caught:
        run_benchmark([original["F16"]], QUICK, original=notes)
    assert "config.json" in caught.value.message + caught.value.hint
    with pytest.raises(BenchError, match="does not exist"):
        torch_rows.measure_torch_speed(tmp_path / "missing", "fp32", QUICK)
    with pytest.raises(BenchError, match="Unknown PyTorch precision fp64"):
        run_benchmark([original["F16"]], QUICK, original=original["folder"], original_precisions=["fp64"])


def test_a_checkpoint_too_big_for_free_memory_is_skipped_with_numbers(original, monkeypatch):
    import runtime.models.hardware as hardware

    monkeypatch.setattr(hardware, "available_ram", lambda: 64 << 20)
    with pytest.raises(InsufficientMemoryError, match="does not fit in memory") as caught:
        torch_rows.measure_torch_speed(original["folder"], "fp32", QUICK)
    assert caught.value.facts["needed_bytes"] > caught.value.facts["available_bytes"] == 64 << 20
    run = run_benchmark([], QUICK, original=original["folder"], original_precisions=["int8"])
    (row,) = run.results
    assert row.status == "skipped" and "MiB" in row.error and "PyTorch INT8" in row.error


def test_cancel_kills_the_pytorch_child(original, monkeypatch):
    children = []

    import runtime.bench.speed as speed

    class Recorded(speed.ChildProcess):
        def start(self):
            children.append(self)
            super().start()

    monkeypatch.setattr(speed, "ChildProcess", Recorded)
    cancel = CancelToken()

    def progress(done, total, message):
        if message.endswith("loaded"):
            cancel.cancel()

    with pytest.raises(Cancelled):
        torch_rows.measure_torch_speed(original["folder"], "fp32", SpeedOptions(threads=2, n_ctx=2048, prompt_tokens=32,
                                       gen_tokens=2000, reps=3), progress=progress, cancel=cancel)
    assert children and not children[0].alive and children[0].returncode is not None


def test_the_cli_finds_the_original_from_the_gguf_and_prints_its_rows(original, capsys):
    from app.cli import main

    quick = ["--threads", "2", "--ctx", "64", "--prompt-tokens", "32", "--gen-tokens", "8", "--reps", "1"]
    assert main(["bench", str(original["F16"]), *quick, "--original", "--original-precisions", "int8,fp32",
                 "--json"]) == 0
    fp32, int8, f16 = json.loads(capsys.readouterr().out)
    assert (fp32["engine"], fp32["quant"], int8["quant"], f16["engine"]) == \
        ("pytorch", "FP32", "INT8 (dynamic)", "llama.cpp")
    assert fp32["path"] == int8["path"] == str(Path(original["folder"]).resolve())
    assert int8["size_bytes"] < fp32["size_bytes"] and int8["tg_tokens_per_s"] > 0
    assert main(["bench", *quick, "--original", "--original-precisions", "fp64"]) == 2
    assert "names the checkpoint" in capsys.readouterr().err   # no GGUF to find it from


def test_the_original_scored_against_a_chosen_gguf_reference(original, text):
    run = run_benchmark([original["F16"]], QUICK, quality=True, text_path=text, reference_path=original["F16"],
                        original=original["folder"], original_precisions=["fp32"])
    fp32, f16 = run.results
    assert run.reference_path == str(original["F16"]) and f16.quality.is_reference
    # The same weights in FP32 against llama.cpp's F16: as close as F16 was to FP32 the other way round.
    assert fp32.engine == "pytorch" and not fp32.quality.is_reference
    assert 0 < fp32.quality.kld_mean < 1e-3 and fp32.quality.top1_agreement > 0.97
