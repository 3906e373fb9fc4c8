"""Measure one GGUF's speed in a fresh child process: ``measure_speed(path, options)``.

Before any child starts, what can be refused is: options that cannot work (``check_options``), a
damaged file (its header, ``read_gguf_info``: ModelFileError), a model that does not fit in this
machine's free memory at ``options.n_ctx`` (``check_fit``: InsufficientMemoryError with the numbers).
Then ``runtime.bench.speed_child`` loads it and runs llama-bench's tests (see that module) with the
same threads, context, batch sizes and GPU layers for every model of a run, and with
``options.parallel`` llama-batched-bench's test at each N (``measure_speed_and_batching``). Cancel
kills the child; a crash becomes ProcessCrashed naming the signal.
"""
from __future__ import annotations

import os
from pathlib import Path

from runtime.bench.results import BatchedPoint, SpeedFigures, SpeedOptions, Spread
from runtime.errors import BenchError, ProcessCrashed
from runtime.jobs import CancelToken, ProgressCallback, no_progress
from runtime.procs import ChildProcess

CHILD_MODULE = "runtime.bench.speed_child"
START_TIMEOUT_S = 120.0          # importing llama.cpp on a cold, busy machine
LOAD_TIMEOUT_S = 1800.0          # a big model from a slow disk
RUN_TIMEOUT_S = 7 * 24 * 3600.0  # no limit worth the name: Cancel is the way out
_CRASH_HINT = ("The file may be damaged, or the computer ran out of memory: close other programs, "
               "or choose a smaller context, and try again.")
MAX_PARALLEL = 64                # sequences decoded together in the batched test (llama.cpp allows 256)
CELLS_PAD = 256                  # llama.cpp rounds each sequence's share of the context up to this


def resolved_threads(options: SpeedOptions) -> int:
    """The threads a run uses: ``options.threads``, or for 0 the physical cores (llama-bench's choice)."""
    from runtime.engine.types import default_threads

    return options.threads if options.threads > 0 else default_threads()


def check_options(options: SpeedOptions) -> None:
    """Raise BenchError naming the first option that cannot work."""
    from runtime.engine.types import max_threads

    o = options
    positive = {"prompt tokens": o.prompt_tokens, "generated tokens": o.gen_tokens, "repetitions": o.reps,
                "context length": o.n_ctx, "batch size": o.n_batch, "micro-batch size": o.n_ubatch}
    for what, value in positive.items():
        if not isinstance(value, int) or value < 1:
            raise BenchError(f"The number of {what} must be 1 or more, not {value}.", option=what)
    if not 0 <= o.threads <= max_threads():
        raise BenchError(f"{o.threads} threads is not sensible here: use 1 to {max_threads()}, or 0 for "
                         f"the physical cores ({os.cpu_count()} logical CPUs here).", option="threads")
    if o.n_gpu_layers < -1:
        raise BenchError(f"{o.n_gpu_layers} GPU layers: use 0 or more, or -1 for all layers.", option="gpu layers")
    _check_parallel(o.parallel)
    longest = max(o.prompt_tokens, o.gen_tokens)
    if longest > o.n_ctx:
        raise BenchError(f"A context of {o.n_ctx} tokens cannot hold the {longest} tokens a test needs.",
                         hint=f"Use a context of at least {longest} tokens, or fewer test tokens.",
                         option="context length", needed_tokens=longest)


def _check_parallel(parallel) -> None:
    if not isinstance(parallel, (list, tuple)):
        raise BenchError(f"The parallel sequences must be a list of numbers, not {parallel!r}.",
                         option="parallel sequences")
    for n in parallel:
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_PARALLEL:
            raise BenchError(f"{n!r} parallel sequences cannot be measured: use 1 to {MAX_PARALLEL}.",
                             hint="For example 1, 2, 4, 8.", option="parallel sequences")
    if len(set(parallel)) != len(parallel):
        raise BenchError(f"The parallel sequences {', '.join(map(str, parallel))} name a number twice.",
                         hint="Give each number of sequences once, e.g. 1, 2, 4, 8.", option="parallel sequences")


def batched_context(options: SpeedOptions) -> int:
    """Cells of the batched test's context: the largest N times prompt_tokens + gen_tokens, each
    sequence's share rounded up as llama.cpp rounds it (0 without ``options.parallel``)."""
    if not options.parallel:
        return 0
    per_sequence = -(-(options.prompt_tokens + options.gen_tokens) // CELLS_PAD) * CELLS_PAD
    return max(options.parallel) * per_sequence


def describe_options(options: SpeedOptions) -> str:
    """The options in words: "pp512 and tg128, 3 repetitions after a warm-up; 2 threads, ..."."""
    o = options
    threads = f"{o.threads} threads" if o.threads > 0 else f"{resolved_threads(o)} threads (physical cores)"
    layers = "all GPU layers" if o.n_gpu_layers < 0 else ("CPU only" if o.n_gpu_layers == 0
                                                          else f"{o.n_gpu_layers} GPU layers")
    warmup = " after a warm-up" if o.warmup else ", no warm-up"
    reps = f"{o.reps} repetition{'s' if o.reps != 1 else ''}"
    text = (f"pp{o.prompt_tokens} and tg{o.gen_tokens}, {reps}{warmup}; {threads}, context {o.n_ctx:,}, "
            f"batch {o.n_batch}/{o.n_ubatch}, {layers}")
    if o.parallel:
        text += f"; batched: {', '.join(map(str, o.parallel))} sequences of pp{o.prompt_tokens} + tg{o.gen_tokens}"
    return text


def check_memory(path: str | os.PathLike, options: SpeedOptions):
    """Read the header and compare the model's needs at ``options.n_ctx`` (or the batched test's
    context, ``batched_context``, when larger: the two contexts never exist together) with free memory.

    Returns the GGUFInfo. Raises ModelFileError for a damaged file and InsufficientMemoryError (facts:
    needed_bytes, available_bytes, n_ctx, memory) for a model that does not fit.
    """
    from runtime.models.hardware import require_fit

    gpus = None
    if options.n_gpu_layers != 0:
        from runtime.bench.machine import gpu_devices

        gpus = gpu_devices()
    batched = batched_context(options)
    if batched > options.n_ctx:
        return require_fit(path, batched, gpus=gpus,
                           hint=f"The batched test holds {max(options.parallel)} sequences of "
                                f"{options.prompt_tokens + options.gen_tokens} tokens at once: measure fewer "
                                "parallel sequences or fewer tokens, close other programs, or leave this model out.")
    return require_fit(path, options.n_ctx, gpus=gpus,
                       hint="Close other programs, choose a smaller context, or leave this model out.")


def child_args(path: str | os.PathLike, options: SpeedOptions) -> list[str]:
    """The speed child's command-line arguments for ``path`` measured with ``options``."""
    o = options
    args = [os.fspath(path), "--threads", str(resolved_threads(o)), "--ctx", str(o.n_ctx), "--batch",
            str(o.n_batch), "--ubatch", str(o.n_ubatch), "--gpu-layers", str(o.n_gpu_layers),
            "--prompt-tokens", str(o.prompt_tokens), "--gen-tokens", str(o.gen_tokens), "--reps", str(o.reps)]
    if o.parallel:
        args += ["--parallel", ",".join(map(str, o.parallel))]
    return args + ([] if o.warmup else ["--no-warmup"])


def measure_speed(path: str | os.PathLike, options: SpeedOptions, *, progress: ProgressCallback = no_progress,
                  cancel: CancelToken | None = None) -> SpeedFigures:
    """``measure_speed_and_batching``'s SpeedFigures alone."""
    return measure_speed_and_batching(path, options, progress=progress, cancel=cancel)[0]


def measure_speed_and_batching(path: str | os.PathLike, options: SpeedOptions, *,
                               progress: ProgressCallback = no_progress, cancel: CancelToken | None = None
                               ) -> tuple[SpeedFigures, list[BatchedPoint] | None]:
    """Load ``path`` in a fresh child and measure it with ``options``: its SpeedFigures, and with
    ``options.parallel`` one BatchedPoint per N (None without).

    ``progress(done, total, message)`` counts steps (loading, the warm-up, each repetition of each
    test): "pp512 rep 2/3". Raises BenchError (options), ModelFileError / UnsupportedArchitectureError
    (a damaged file, one llama.cpp cannot load), InsufficientMemoryError (does not fit, with the
    numbers), Cancelled (``cancel`` fired: the child is killed), ProcessCrashed (the child died: its
    signal in ``facts["signal"]``), ProcessTimeout (it did not start).
    """
    cancel = cancel or CancelToken()
    check_options(options)
    name = Path(path).name
    check_memory(path, options)
    cancel.check()
    from runtime.bench.speed_child import runner_steps

    steps = runner_steps(options.reps, options.warmup, len(options.parallel))
    done = run_speed_child(child_args(path, options), name, steps, "speed runner", progress, cancel)
    return figures_from_event(done), batched_from_event(done)


def run_speed_child(args: list[str], name: str, steps: int, process_name: str, progress: ProgressCallback,
                    cancel: CancelToken, *, module: str = CHILD_MODULE, start_timeout_s: float = START_TIMEOUT_S,
                    hint: str = _CRASH_HINT) -> dict:
    """Run one speed child (``module``: llama.cpp's, or PyTorch's) to its ``done`` event and return it; loading
    is the first of ``1 + steps`` progress steps, the child's own ``progress`` events the others."""
    total = 1 + steps
    child = ChildProcess(module, args, name=process_name, error_class=ProcessCrashed)

    def on_event(event: dict) -> None:
        if event.get("event") == "progress":
            progress(1 + int(event.get("done", 0)), total, f"{name}: {event.get('message', '')}")

    try:
        progress(0, total, f"{name}: loading")
        child.start()
        child.wait_for("started", start_timeout_s, cancel, doing="starting", hint=hint)
        child.wait_for("loaded", LOAD_TIMEOUT_S, cancel, doing=f"loading {name}", hint=hint)
        progress(1, total, f"{name}: loaded")
        done = child.wait_for("done", RUN_TIMEOUT_S, cancel, on_event=on_event, doing=f"measuring {name}", hint=hint)
        child.wait(5)
    finally:
        child.kill()
    progress(total, total, f"{name}: done")
    return done


def figures_from_event(event: dict) -> SpeedFigures:
    """SpeedFigures from the child's ``done`` event."""
    return SpeedFigures(load_s=float(event["load_s"]), pp_tokens_per_s=Spread.of(event["pp_tokens_per_s"]),
                        tg_tokens_per_s=Spread.of(event["tg_tokens_per_s"]), ttft_s=Spread.of(event["ttft_s"]),
                        peak_rss_bytes=event.get("peak_rss_bytes"), vram_bytes=event.get("vram_bytes"),
                        threads=int(event.get("threads") or 0))


def batched_from_event(event: dict) -> list[BatchedPoint] | None:
    """The batched test's points from the child's ``done`` event (None when it did not run)."""
    points = event.get("batched")
    if points is None:
        return None
    return [BatchedPoint(n=int(p["n"]), tg_tokens_per_s_aggregate=float(p["tg_tokens_per_s_aggregate"]),
                         tg_tokens_per_s_per_sequence=float(p["tg_tokens_per_s_per_sequence"]),
                         pp_tokens_per_s_aggregate=float(p["pp_tokens_per_s_aggregate"])) for p in points]
