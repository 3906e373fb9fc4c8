"""quantize_gguf on real files: llama.cpp in a child process, checked against llama.cpp run directly.

Sources: a tiny random llama GGUF at F16 and F32 (tests/quantize_models.py) and the real starter
model (Q4_1, requantized). The reference is ``llama_model_quantize`` called in this process, and
llama.cpp's own ``llama-quantize`` when benchmarks/build_llama_bench.sh has built it.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from model_files import write_truncated_copy
from quantize_models import cached_tiny_llama, reference_quantize
from runtime.compress import quantize, sizes
from runtime.compress.quantize import (
    QueueItem, advanced_types, default_out_path, quantize_gguf, quantize_queue, quantize_types,
)
from runtime.errors import Cancelled, ModelFileError, ProcessCrashed, QuantizeError
from runtime.jobs import CancelToken
from runtime.models import gguf_info
from runtime.models.gguf_info import read_gguf_info

MAIN = ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0"]
LLAMA_QUANTIZE = Path(__file__).resolve().parents[3] / "benchmarks" / "_build" / "llama-quantize"


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    folder = tmp_path_factory.getbasetemp() / "quantize-models"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def f16_outputs(models, tmp_path_factory):
    """The tiny F16 model quantized by the app to each main type, with the progress it reported."""
    src = cached_tiny_llama(models)
    folder = tmp_path_factory.mktemp("f16-outputs")
    made = {}
    for qtype in MAIN:
        updates = []
        out = quantize_gguf(src, default_out_path(src, qtype, folder), qtype,
                            progress=lambda d, t, m: updates.append((d, t, m)))
        made[qtype] = (out, updates)
    return src, made


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir() if p.name.endswith(".partial"))


def quantizer_children() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "runtime.compress.quantize_child" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            pass
    return found


@pytest.mark.parametrize("qtype", MAIN)
def test_f16_to_each_main_type_is_llama_cpps_own_output(f16_outputs, tmp_path, qtype):
    src, made = f16_outputs
    out, updates = made[qtype]
    assert out.name == f"tiny-llama-default-{qtype}.gguf"
    reference = reference_quantize(src, tmp_path / "reference.gguf", qtype)
    assert sha256(out) == sha256(reference)  # byte for byte: same types, same data, same header
    info = read_gguf_info(out)
    assert info.file_type == qtype and info.tensor_count == 75
    expected = sizes.expected_sizes(src, [qtype])[qtype]
    assert 0 <= expected - out.stat().st_size <= 32
    assert not leftovers(out.parent)


def test_progress_follows_the_file_tensor_by_tensor(f16_outputs):
    src, made = f16_outputs
    out, updates = made["Q4_K_M"]
    expected = sizes.expected_sizes(src, ["Q4_K_M"])["Q4_K_M"]
    assert updates[0] == (0, expected, "Q4_K_M: starting llama.cpp")
    tensors = [u for u in updates if "/75)" in u[2]]
    assert len(tensors) == 75 and tensors[0][2] == "Q4_K_M: output.weight (1/75)"
    done = [d for d, _, _ in tensors]
    assert done == sorted(done) and done[-1] > 0.9 * expected and all(t == expected for _, t, _ in tensors)
    assert updates[-1][2].startswith("Q4_K_M: done") and updates[-1][0] == out.stat().st_size


@pytest.mark.skipif(not LLAMA_QUANTIZE.exists(), reason="llama-quantize not built (benchmarks/build_llama_bench.sh)")
@pytest.mark.parametrize("qtype", MAIN)
def test_same_bytes_as_llama_quantize_tool(f16_outputs, tmp_path, qtype):
    src, made = f16_outputs
    tool_out = tmp_path / "tool.gguf"
    subprocess.run([str(LLAMA_QUANTIZE), str(src), str(tool_out), qtype, "2"], check=True, capture_output=True)
    assert sha256(made[qtype][0]) == sha256(tool_out)


@pytest.mark.parametrize("qtype", MAIN)
def test_output_loads_and_generates_in_the_engine(f16_outputs, qtype):
    from runtime.engine.local import LocalEngine
    from runtime.engine.types import LoadOptions, SamplingParams

    out, _ = f16_outputs[1][qtype]
    with LocalEngine(out, LoadOptions(n_ctx=256, n_threads=2)) as engine:
        reply = engine.client().stream_chat([{"role": "user", "content": "the cat"}],
                                            SamplingParams(temperature=0, max_tokens=6))
    assert reply.stats.completion_tokens > 0 and reply.stats.prompt_tokens > 3


def test_f32_source_to_q8_0(models, tmp_path):
    src = cached_tiny_llama(models, dtype="f32")
    out = quantize_gguf(src, tmp_path / "f32-Q8_0.gguf", "Q8_0")
    assert sha256(out) == sha256(reference_quantize(src, tmp_path / "reference.gguf", "Q8_0"))
    assert read_gguf_info(out).file_type == "Q8_0"


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_starter_requantized_only_when_asked(starter_model, tmp_path, qtype):
    out = tmp_path / f"starter-{qtype}.gguf"
    with pytest.raises(QuantizeError) as err:
        quantize_gguf(starter_model, out, qtype)
    assert "already quantized (Q4_1)" in err.value.message and "quality twice" in err.value.message
    assert "--requantize" in err.value.hint
    assert list(tmp_path.iterdir()) == []
    quantize_gguf(starter_model, out, qtype, requantize=True)
    reference = reference_quantize(Path(starter_model), tmp_path / "reference.gguf", qtype)
    assert sha256(out) == sha256(reference)
    assert abs(sizes.expected_sizes(starter_model, [qtype])[qtype] - out.stat().st_size) <= 32


def test_unquantized_or_same_target_from_a_quantized_source_is_refused(starter_model, tmp_path):
    with pytest.raises(QuantizeError, match="bigger without bringing back"):
        quantize_gguf(starter_model, tmp_path / "x.gguf", "F16", requantize=True)
    with pytest.raises(QuantizeError, match="is already Q4_1: there is nothing to do"):
        quantize_gguf(starter_model, tmp_path / "x.gguf", "Q4_1", requantize=True)
    assert list(tmp_path.iterdir()) == []


def _run_until_tensor(src, out, qtype, index, action, **kwargs):
    """quantize_gguf, calling ``action(child_process)`` when llama.cpp starts tensor ``index``."""
    seen = {}

    def progress(done, total, message):
        if f"({index}/" in message and "child" not in seen:
            children = quantizer_children()
            assert len(children) == 1
            seen["child"] = children[0]
            action(children[0])

    with pytest.raises(BaseException) as err:
        quantize_gguf(src, out, qtype, progress=progress, **kwargs)
    return err.value, seen["child"]


def test_cancel_mid_run_kills_the_child_and_removes_the_partial(starter_model, tmp_path):
    cancel = CancelToken()
    error, child = _run_until_tensor(starter_model, tmp_path / "out.gguf", "Q4_K_M", 40,
                                     lambda proc: cancel.cancel(), requantize=True, cancel=cancel)
    assert isinstance(error, Cancelled)
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert list(tmp_path.iterdir()) == []


def test_child_left_alone_removes_its_partial(starter_model, tmp_path):
    """When the app dies (its end of the child's stdin closes), the child stops and cleans up."""
    from runtime import procs
    from runtime.procs import ChildProcess

    out = tmp_path / "out.gguf.partial"
    child = ChildProcess(quantize.CHILD_MODULE, [str(starter_model), str(out), str(sizes.ftype_number("Q4_K_M")),
                                                 "--requantize"], name="quantizer")
    child.start()
    try:
        child.wait_for("tensor", 60)
        assert out.exists()
        child.stop(grace_s=10)
    finally:
        child.kill()
    assert child.returncode == procs.EXIT_ORPHANED
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL])
def test_child_crash_is_a_typed_error_naming_the_signal(starter_model, tmp_path, sig):
    error, child = _run_until_tensor(starter_model, tmp_path / "out.gguf", "Q4_K_M", 40,
                                     lambda proc: os.kill(proc.pid, sig), requantize=True)
    assert isinstance(error, ProcessCrashed)
    assert error.facts["signal"] == sig.name and sig.name in error.message
    assert "quantizing to Q4_K_M" in error.message and "memory" in error.hint
    assert list(tmp_path.iterdir()) == []


def test_damaged_sources(models, tmp_path):
    src = cached_tiny_llama(models)
    cut = write_truncated_copy(src, tmp_path)
    with pytest.raises(ModelFileError, match="truncated"):
        quantize_gguf(cut, tmp_path / "out.gguf", "Q8_0")
    # A header that reads well over tensor data that does not: llama.cpp checks every row.
    bad = tmp_path / "nan.gguf"
    shutil.copy(src, bad)
    header = gguf_info._read_header(bad, bad.stat().st_size)
    tensor = next(t for t in header.tensors if t.name == "blk.3.ffn_up.weight")
    with open(bad, "r+b") as f:
        f.seek(header.data_start + tensor.offset + 64)
        f.write(b"\xff\x7f" * 64)  # F16 NaNs
    with pytest.raises(ModelFileError) as err:
        quantize_gguf(bad, tmp_path / "out.gguf", "Q4_0")
    assert "has invalid data" in err.value.message and "damaged" in err.value.hint
    assert {p.name for p in tmp_path.iterdir()} == {cut.name, "nan.gguf"}


def test_a_target_the_shapes_cannot_take(models, tmp_path):
    src = cached_tiny_llama(models, n_embd=64, n_ff=128)
    with pytest.raises(QuantizeError) as err:
        quantize_gguf(src, tmp_path / "out.gguf", "Q4_K_M")
    assert "cannot be made" in err.value.message and "256" in err.value.message
    assert list(tmp_path.iterdir()) == []
    quantize_gguf(src, tmp_path / "out.gguf", "Q4_0")  # 32-value blocks fit


def test_refusals_before_anything_runs(models, tmp_path):
    src = cached_tiny_llama(models)
    with pytest.raises(QuantizeError, match="importance matrix"):
        quantize_gguf(src, tmp_path / "a.gguf", "IQ2_XS")
    with pytest.raises(QuantizeError, match="Unknown quantization type"):
        quantize_gguf(src, tmp_path / "a.gguf", "Q7_X")
    with pytest.raises(QuantizeError, match="does not exist"):
        quantize_gguf(src, tmp_path / "no" / "a.gguf", "Q8_0")
    (tmp_path / "a.gguf").write_bytes(b"keep me")
    with pytest.raises(QuantizeError, match="already exists"):
        quantize_gguf(src, tmp_path / "a.gguf", "Q8_0")
    assert (tmp_path / "a.gguf").read_bytes() == b"keep me"
    quantize_gguf(src, tmp_path / "a.gguf", "Q8_0", overwrite=True)
    assert read_gguf_info(tmp_path / "a.gguf").file_type == "Q8_0"


@pytest.fixture
def small_disk(tmp_path):
    """A real small filesystem (tmpfs) to fill up; needs root (skipped otherwise)."""
    mounted = []

    def mount(size_bytes: int) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(point)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=False)


def test_not_enough_disk_is_refused_before_starting(models, small_disk):
    disk = small_disk(6 * 1024**2)  # the Q8_0 file takes 4.9 MiB; 4 MiB more are kept free
    with pytest.raises(QuantizeError) as err:
        quantize_gguf(cached_tiny_llama(models), disk / "out.gguf", "Q8_0")
    assert "Not enough free disk space for Q8_0: it needs about 4.9 MiB and 4.0 MiB to spare" in err.value.message
    assert err.value.facts["free_bytes"] <= 6 * 1024**2
    assert list(disk.iterdir()) == []


def test_disk_filling_up_while_writing(starter_model, small_disk):
    expected = sizes.expected_sizes(starter_model, ["Q4_K_M"])["Q4_K_M"]
    disk = small_disk(expected + quantize.disk_margin(expected) + 4 * 1024**2)
    filler = disk / "filler.bin"

    def fill(done, total, message):
        if "(20/" in message and not filler.exists():
            with open(filler, "wb") as f:  # another program takes the space once llama.cpp is writing
                try:
                    while True:
                        f.write(b"\0" * (1 << 20))
                except OSError:
                    pass

    with pytest.raises(QuantizeError) as err:
        quantize_gguf(starter_model, disk / "out.gguf", "Q4_K_M", requantize=True, progress=fill)
    assert "disk filled up while writing Q4_K_M" in err.value.message and "Free some disk space" in err.value.hint
    assert sorted(p.name for p in disk.iterdir()) == ["filler.bin"]


def test_queue_runs_in_order_and_reports_each(models, tmp_path):
    src = cached_tiny_llama(models)
    (tmp_path / "tiny-llama-default-Q6_K.gguf").write_bytes(b"in the way")
    started, ended, messages = [], [], []
    results = quantize_queue(src, ["Q8_0", "Q6_K", QueueItem("Q4_0", tmp_path / "mine.gguf")], out_dir=tmp_path,
                             progress=lambda d, t, m: messages.append(m),
                             on_start=lambda i, q, p: started.append((i, q, p.name)),
                             on_result=lambda r: ended.append(r.qtype))
    assert started == [(1, "Q8_0", "tiny-llama-default-Q8_0.gguf"), (2, "Q6_K", "tiny-llama-default-Q6_K.gguf"),
                       (3, "Q4_0", "mine.gguf")]
    assert ended == ["Q8_0", "Q6_K", "Q4_0"]
    ok, blocked, last = results
    assert ok.ok and blocked.error is not None and "already exists" in blocked.error.message and last.ok
    assert ok.real_bytes == (tmp_path / "tiny-llama-default-Q8_0.gguf").stat().st_size
    assert 0 <= ok.expected_bytes - ok.real_bytes <= 32
    assert any(m.startswith("[1/3] Q8_0:") for m in messages) and any(m.startswith("[3/3] Q4_0:") for m in messages)
    assert ok.to_dict()["type"] == "Q8_0" and ok.to_dict()["error"] is None


def test_queue_cancel_stops_the_rest(models, tmp_path):
    src = cached_tiny_llama(models)
    cancel = CancelToken()
    ended = []
    with pytest.raises(Cancelled):
        quantize_queue(src, ["Q8_0", "Q4_0"], out_dir=tmp_path, cancel=cancel,
                       progress=lambda d, t, m: cancel.cancel() if "(3/" in m else None,
                       on_result=ended.append)
    assert [(r.qtype, r.cancelled) for r in ended] == [("Q8_0", True)]
    assert list(tmp_path.iterdir()) == []


def test_type_lists():
    assert quantize_types() == MAIN
    advanced = advanced_types()
    assert {"Q5_K_S", "Q4_K_S", "Q3_K_M", "Q2_K", "IQ4_XS", "F16"} <= set(advanced)
    assert not set(advanced) & set(MAIN)
    assert not set(advanced) & set(sizes.IMATRIX_TYPES) and "TQ1_0" not in advanced
    assert "IQ2_XS" in quantize.imatrix_types()


def test_default_out_path(tmp_path):
    assert default_out_path("/m/SmolLM2-135M-Instruct.Q4_1.gguf", "q8_0").as_posix() == "/m/SmolLM2-135M-Instruct-Q8_0.gguf"
    assert default_out_path("/m/model-f16.gguf", "Q4_K").as_posix() == "/m/model-Q4_K_M.gguf"
    assert default_out_path("/m/tiny.gguf", "Q4_0", tmp_path) == tmp_path / "tiny-Q4_0.gguf"
