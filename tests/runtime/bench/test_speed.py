"""measure_speed on real models: llama.cpp in a child process, llama-bench's tests, typed failures.

Models: the real starter model (SmolLM2-135M, Q4_1) and a tiny random llama (tests/quantize_models.py).
Few tokens and two repetitions keep each run to a few seconds; timings are only checked for sanity.
"""
from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from model_files import write_truncated_copy, write_unknown_arch_gguf
from quantize_models import cached_tiny_llama
from runtime.bench import speed
from runtime.bench.results import SpeedFigures, SpeedOptions
from runtime.bench.speed import check_options, describe_options, measure_speed
from runtime.errors import (
    BenchError, Cancelled, InsufficientMemoryError, ModelFileError, ProcessCrashed, UnsupportedArchitectureError,
)
from runtime.jobs import CancelToken
from runtime.procs import ChildProcess

QUICK = dict(prompt_tokens=32, gen_tokens=8, reps=2, n_ctx=256)


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    folder = tmp_path_factory.getbasetemp() / "bench-models"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture
def no_child(monkeypatch):
    """Fail the test if any child process is started."""
    def refuse(self):
        raise AssertionError(f"a child was started: {self.module}")

    monkeypatch.setattr(ChildProcess, "start", refuse)


def speed_children() -> list[psutil.Process]:
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if speed.CHILD_MODULE in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            pass
    return found


def _check_spread(spread, reps):
    assert len(spread.values) == reps
    assert all(v > 0 for v in spread.values)
    assert spread.low <= spread.median <= spread.high
    assert spread.low == min(spread.values) and spread.high == max(spread.values)


def test_starter_model_figures(starter_model):
    steps = []
    figures = measure_speed(starter_model, SpeedOptions(threads=1, **QUICK),
                            progress=lambda d, t, m: steps.append((d, t, m)))
    assert isinstance(figures, SpeedFigures)
    assert 0 < figures.load_s < 60
    for spread in (figures.pp_tokens_per_s, figures.tg_tokens_per_s, figures.ttft_s):
        _check_spread(spread, 2)
    # Sane orders of magnitude for a 135M model on any CPU: a prompt batch beats single tokens.
    assert 1 < figures.tg_tokens_per_s.median < 100_000
    assert figures.pp_tokens_per_s.median > figures.tg_tokens_per_s.median
    assert figures.ttft_s.median < 30
    assert figures.threads == 1
    # The weights are memory-mapped and all touched: the child's peak is above the file's size.
    assert figures.peak_rss_bytes > os.path.getsize(starter_model)
    assert figures.vram_bytes is None  # a CPU build reports no GPU memory

    name = os.path.basename(starter_model)
    messages = [m.removeprefix(f"{name}: ") for _, _, m in steps]
    assert messages == ["loading", "loaded", "warm-up", "pp32 rep 1/2", "pp32 rep 2/2", "tg8 rep 1/2",
                        "tg8 rep 2/2", "TTFT rep 1/2", "TTFT rep 2/2", "done"]
    dones = [d for d, _, _ in steps]
    assert dones == sorted(dones) and dones[-1] == steps[-1][1] == 8
    assert not speed_children()


@pytest.mark.parametrize("threads", [1, 2])
def test_the_threads_asked_are_used(models, threads):
    figures = measure_speed(cached_tiny_llama(models), SpeedOptions(threads=threads, **QUICK))
    assert figures.threads == threads
    _check_spread(figures.tg_tokens_per_s, 2)


def test_threads_zero_means_the_physical_cores(models):
    from runtime.engine.types import default_threads

    figures = measure_speed(cached_tiny_llama(models), SpeedOptions(threads=0, **{**QUICK, "reps": 1}))
    assert figures.threads == default_threads()
    assert len(figures.pp_tokens_per_s.values) == 1


def test_no_warmup_and_three_reps(models):
    steps = []
    figures = measure_speed(cached_tiny_llama(models), SpeedOptions(threads=1, warmup=False,
                                                                    **{**QUICK, "reps": 3}),
                            progress=lambda d, t, m: steps.append(m))
    assert not any("warm-up" in m for m in steps)
    assert any(m.endswith("tg8 rep 3/3") for m in steps)
    for spread in (figures.pp_tokens_per_s, figures.tg_tokens_per_s, figures.ttft_s):
        _check_spread(spread, 3)


def test_damaged_file_is_refused_before_any_child(starter_model, tmp_path, no_child):
    cut = write_truncated_copy(starter_model, tmp_path)
    with pytest.raises(ModelFileError, match="truncated") as err:
        measure_speed(cut, SpeedOptions(threads=1, **QUICK))
    assert err.value.path == str(cut)


def test_model_that_does_not_fit_is_refused_with_the_numbers(starter_model, monkeypatch, no_child):
    from runtime.models import hardware

    monkeypatch.setattr(hardware, "available_ram", lambda: 50 * 1024**2)
    with pytest.raises(InsufficientMemoryError) as err:
        measure_speed(starter_model, SpeedOptions(threads=1, n_gpu_layers=0, **QUICK))
    facts = err.value.facts
    assert facts["available_bytes"] == 50 * 1024**2
    assert facts["needed_bytes"] > os.path.getsize(starter_model) > facts["available_bytes"]
    assert facts["n_ctx"] == QUICK["n_ctx"]
    assert "50.0 MiB of RAM is free" in err.value.message and "needs about" in err.value.message


def test_bad_options_are_refused_before_any_child(starter_model, no_child):
    with pytest.raises(BenchError, match="cannot hold the 512 tokens") as err:
        measure_speed(starter_model, SpeedOptions(n_ctx=256, prompt_tokens=512))
    assert "at least 512 tokens" in err.value.hint
    for bad in (dict(reps=0), dict(gen_tokens=0), dict(threads=-1), dict(n_batch=0), dict(n_gpu_layers=-2)):
        with pytest.raises(BenchError):
            check_options(SpeedOptions(**bad))
    check_options(SpeedOptions())


def test_cancel_mid_run_kills_the_child(starter_model):
    cancel = CancelToken()
    seen = {}

    def progress(done, total, message):
        if "pp32 rep 1/2" in message and "child" not in seen:
            [seen["child"]] = speed_children()
            seen["at"] = time.monotonic()
            cancel.cancel()

    with pytest.raises(Cancelled):
        measure_speed(starter_model, SpeedOptions(threads=1, **{**QUICK, "gen_tokens": 64}),
                      progress=progress, cancel=cancel)
    assert time.monotonic() - seen["at"] < 5
    child = seen["child"]
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE


def test_cancel_before_start_starts_nothing(starter_model, no_child):
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        measure_speed(starter_model, SpeedOptions(threads=1, **QUICK), cancel=cancel)


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL])
def test_a_crash_is_a_typed_error_naming_the_signal(starter_model, sig):
    def progress(done, total, message):
        if message.endswith("warm-up"):
            [child] = speed_children()
            os.kill(child.pid, sig)

    with pytest.raises(ProcessCrashed) as err:
        measure_speed(starter_model, SpeedOptions(threads=1, **{**QUICK, "gen_tokens": 64}), progress=progress)
    assert err.value.facts["signal"] == sig.name and sig.name in err.value.message
    assert "measuring" in err.value.message and "memory" in err.value.hint
    assert not speed_children()


def test_unknown_architecture_comes_back_typed(tmp_path):
    path = write_unknown_arch_gguf(tmp_path, arch="flibbertigibbet")
    with pytest.raises(UnsupportedArchitectureError) as err:
        measure_speed(path, SpeedOptions(threads=1, **QUICK))
    assert "flibbertigibbet" in err.value.message and err.value.facts["architecture"] == "flibbertigibbet"
    assert not speed_children()


def test_child_reports_a_file_llama_cpp_cannot_load(starter_model, tmp_path):
    """Straight to the child (the parent's header check would refuse it first): llama.cpp's refusal
    comes back as a ModelFileError event, and the child exits."""
    cut = write_truncated_copy(starter_model, tmp_path, fraction=0.9)
    child = ChildProcess(speed.CHILD_MODULE, speed.child_args(cut, SpeedOptions(threads=1, **QUICK)),
                         name="speed runner")
    child.start()
    try:
        with pytest.raises(ModelFileError) as err:
            child.wait_for("done", 60)
        assert type(err.value) is ModelFileError and cut.name in err.value.message
        assert child.wait(10) and child.returncode == 3
    finally:
        child.kill()


def test_describe_options():
    text = describe_options(SpeedOptions(threads=2, n_ctx=512, reps=3))
    assert text == "pp512 and tg128, 3 repetitions after a warm-up; 2 threads, context 512, batch 2048/512, " \
                   "all GPU layers"
    assert "CPU only" in describe_options(SpeedOptions(n_gpu_layers=0, warmup=False, reps=1))
    assert "physical cores" in describe_options(SpeedOptions(threads=0))
