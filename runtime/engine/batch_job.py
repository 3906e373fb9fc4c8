"""A batch job: a file of prompts through the local engine, N at a time, with resume.

Input: JSON lines, each ``{"id": ..., "prompt": "..."}`` or ``{"id": ..., "messages": [...]}``
(``id`` optional: the line number; text or a whole number, unique). The whole file is checked
before any model loads; a bad line is named with its number and what is wrong with it.

Output: one JSON line per finished prompt, appended as it finishes, flushed and fsynced: ``id``,
``prompt`` or ``messages``, ``reply``, ``finish_reason``, ``usage`` and ``timings``. Resume: the
ids already in the output are skipped; a torn last line (the job was killed while writing it) is
cut off first, so that prompt runs again. Prompts that fail (too long for the context, ...) are
not written, so a later run tries them again; the summary names them.

The engine runs with ``--parallel N`` (``LoadOptions.n_parallel``): up to N requests are in
flight at once through the ordinary client, and the engine decodes them in shared batches.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runtime.engine.templates import message_text
from runtime.engine.types import LoadOptions, SamplingParams
from runtime.errors import Cancelled, EngineCrashed, WorkbenchError
from runtime.jobs import CancelToken, ProgressCallback, no_progress

MAX_REPORTED_PROBLEMS = 10
FATAL_ERRORS = (EngineCrashed,)  # the engine is gone: no later prompt can succeed


class PromptsFileError(WorkbenchError, ValueError):
    """The prompts file (or the output file to resume) cannot be used as it is."""

    kind = "prompts_file"
    default_hint = ('Each line must be a JSON object: {"id": 1, "prompt": "..."} or '
                    '{"id": 1, "messages": [{"role": "user", "content": "..."}]}.')


@dataclass
class BatchPrompt:
    id: object          # as given (text or a whole number), or the line number
    line: int
    prompt: str | None = None
    messages: list | None = None

    @property
    def key(self) -> str:
        return _id_key(self.id)

    def chat_messages(self) -> list[dict]:
        return self.messages if self.messages is not None else [{"role": "user", "content": self.prompt}]

    def source(self) -> dict:
        """What the output line repeats of the input."""
        return {"prompt": self.prompt} if self.messages is None else {"messages": self.messages}


@dataclass
class BatchSummary:
    total: int = 0            # prompts in the file
    done: int = 0             # finished and written by this run
    skipped: int = 0          # already in the output file (resumed)
    failed: int = 0           # not written (see failures); a later run tries them again
    requested: int = 0        # requests sent to the engine by this run
    seconds: float = 0.0      # from the first request to the last answer (without the model load)
    load_s: float = 0.0
    completion_tokens: int = 0
    tokens_per_s: float = 0.0  # completion tokens of this run / seconds, all sequences together
    parallel: int = 1
    out: str = ""
    failures: list[dict] = field(default_factory=list)  # {"id", "line", "error"}

    def to_dict(self) -> dict:
        return asdict(self)


def _id_key(value) -> str:
    return json.dumps(value, ensure_ascii=False)


# --- reading the files ---------------------------------------------------------------------------

def read_prompts(path: str | Path) -> list[BatchPrompt]:
    """The prompts of a JSON-lines file, all checked; PromptsFileError names every bad line (up to
    MAX_REPORTED_PROBLEMS) with its number. Blank lines are skipped."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PromptsFileError(f"The prompts file {path} cannot be read: {exc.strerror or exc}.",
                               hint="Check the path.", path=str(path)) from None
    prompts: list[BatchPrompt] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            item = _prompt_from_line(raw, number)
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
            continue
        if item.key in seen:
            problems.append(f"line {number}: the id {item.key} is already used on line {seen[item.key]}")
            continue
        seen[item.key] = number
        prompts.append(item)
    if problems:
        shown = problems[:MAX_REPORTED_PROBLEMS]
        more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        raise PromptsFileError(
            f"{path.name} has {len(problems)} bad line{'s' if len(problems) > 1 else ''}:\n  "
            + "\n  ".join(shown) + more, path=str(path), lines=[p.split(":")[0] for p in problems])
    if not prompts:
        raise PromptsFileError(f"{path.name} holds no prompts.", path=str(path))
    return prompts


def _prompt_from_line(raw: bytes, number: int) -> BatchPrompt:
    """One line as a BatchPrompt; ValueError says what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    try:
        item = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not valid JSON ({str(exc)[:120]})") from None
    if not isinstance(item, dict):
        raise ValueError(f"a JSON object {{\"prompt\": ...}} is needed, not {type(item).__name__}")
    ident = item.get("id", number)
    if isinstance(ident, bool) or not isinstance(ident, (str, int)) or ident == "":
        raise ValueError(f"'id' must be text or a whole number, not {json.dumps(ident)[:40]}")
    has_prompt, has_messages = "prompt" in item, "messages" in item
    if has_prompt == has_messages:
        raise ValueError("give either 'prompt' or 'messages'" + (", not both" if has_prompt else ""))
    if has_prompt:
        prompt = item["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"'prompt' must be non-empty text, not {json.dumps(prompt)[:40]}")
        return BatchPrompt(ident, number, prompt=prompt)
    messages = item["messages"]
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list of {\"role\": ..., \"content\": ...}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not m["role"]:
            raise ValueError(f"message {i} needs a 'role' (system, user or assistant)")
        try:
            message_text(m.get("content"))
        except TypeError as exc:
            raise ValueError(f"message {i}: {exc}") from None
    return BatchPrompt(ident, number, messages=messages)


def read_done(out_path: str | Path) -> set[str]:
    """The ids (``_id_key``) already in the output file; a torn last line is cut off the file.
    A line in the middle that is not a result means the file is not this job's: PromptsFileError."""
    out_path = Path(out_path)
    try:
        data = out_path.read_bytes()
    except FileNotFoundError:
        return set()
    except OSError as exc:
        raise PromptsFileError(f"The output file {out_path} cannot be read: {exc.strerror or exc}.",
                               hint="Choose another --out file.", path=str(out_path)) from None
    complete = data[: data.rfind(b"\n") + 1]  # what follows the last newline was being written
    if len(complete) < len(data):
        with open(out_path, "r+b") as f:
            f.truncate(len(complete))
            f.flush()
            os.fsync(f.fileno())
    done: set[str] = set()
    for number, raw in enumerate(complete.split(b"\n")[:-1], start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            if not isinstance(record, dict) or "id" not in record or "reply" not in record:
                raise ValueError
        except ValueError:
            raise PromptsFileError(
                f"Line {number} of the output file {out_path.name} is not a result of a batch job, so the "
                "job cannot resume into it.", hint="Choose another --out file, or remove that file.",
                path=str(out_path), line=number) from None
        done.add(_id_key(record["id"]))
    return done


# --- running -------------------------------------------------------------------------------------

class _ResultWriter:
    """Appends one JSON line per result, flushed and fsynced, from any worker thread."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "ab")
        self._lock = threading.Lock()

    def write(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def run_batch(model: str | Path, prompts_path: str | Path, out_path: str | Path, parallel: int = 1, *,
              max_tokens: int = SamplingParams().max_tokens, temperature: float = SamplingParams().temperature,
              n_ctx: int = 2048, n_threads: int | None = None, n_gpu_layers: int | None = None,
              progress: ProgressCallback = no_progress, cancel: CancelToken | None = None) -> BatchSummary:
    """Run every prompt not yet in ``out_path`` (see the module text); returns the summary.

    Raises PromptsFileError before loading anything, the engine's load errors, EngineCrashed when
    the engine dies (finished lines are kept), Cancelled when ``cancel`` is set (finished lines
    kept, replies in flight dropped: they run again next time).
    """
    from runtime.engine.local import LocalEngine

    cancel = cancel or CancelToken()
    out_path = Path(out_path)
    prompts = read_prompts(prompts_path)
    params = SamplingParams(temperature=temperature, max_tokens=max_tokens)
    try:
        params.validate()
    except ValueError as exc:
        raise WorkbenchError(str(exc), hint="See `workbench batch --help`.") from None
    options = LoadOptions(n_ctx=n_ctx, n_parallel=parallel, n_gpu_layers=n_gpu_layers,
                          **({"n_threads": n_threads} if n_threads else {}))
    try:
        options.validate()
    except ValueError as exc:
        raise WorkbenchError(str(exc), hint="See `workbench batch --help`.") from None
    done_keys = read_done(out_path)
    todo = [p for p in prompts if p.key not in done_keys]
    summary = BatchSummary(total=len(prompts), skipped=len(prompts) - len(todo), parallel=parallel,
                           out=str(out_path))
    progress(summary.skipped, summary.total, f"{summary.skipped} already done")
    if not todo:
        return summary
    cancel.check()
    engine = LocalEngine(model, options)
    started = time.perf_counter()
    engine.start(cancel)
    summary.load_s = round(time.perf_counter() - started, 3)
    writer = _ResultWriter(out_path)
    try:
        _run_all(engine, todo, params, writer, summary, progress, cancel)
    finally:
        writer.close()
        engine.stop()
    return summary


def _run_all(engine, todo: list[BatchPrompt], params: SamplingParams, writer: _ResultWriter,
             summary: BatchSummary, progress: ProgressCallback, cancel: CancelToken) -> None:
    """Up to ``summary.parallel`` requests in flight, one worker thread each."""
    stop = CancelToken()  # stops the workers: the caller's cancel, or a fatal error
    cancel.add_callback(stop.cancel)
    lock = threading.Lock()
    pending = iter(todo)
    fatal: list[BaseException] = []
    started = time.perf_counter()

    def report() -> None:
        seconds = time.perf_counter() - started
        rate = summary.completion_tokens / seconds if seconds > 0 else 0.0
        finished = summary.skipped + summary.done
        failed = f" · {summary.failed} failed" if summary.failed else ""
        progress(finished, summary.total, f"{finished}/{summary.total} prompts · {rate:.1f} tokens/s{failed}")

    def work() -> None:
        client = engine.client()
        while not stop.cancelled:
            with lock:
                item = next(pending, None)
                if item is None:
                    return
                summary.requested += 1
            try:
                reply = client.stream_chat(item.chat_messages(), params, cancel=stop)
            except FATAL_ERRORS as exc:
                fatal.append(exc)
                stop.cancel()
                return
            except WorkbenchError as exc:
                if not engine.alive:
                    fatal.append(engine.crash_error("reply"))
                    stop.cancel()
                    return
                with lock:
                    summary.failed += 1
                    summary.failures.append({"id": item.id, "line": item.line, "error": exc.message})
                report()
                continue
            if reply.stats.finish_reason == "cancelled" or stop.cancelled:
                return  # cut short: not a result; it runs again next time
            writer.write(_result_record(item, reply))
            with lock:
                summary.done += 1
                summary.completion_tokens += reply.stats.completion_tokens
            report()

    workers = [threading.Thread(target=work, name=f"batch-{i}", daemon=True)
               for i in range(min(summary.parallel, len(todo)))]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        cancel.remove_callback(stop.cancel)
        summary.seconds = round(time.perf_counter() - started, 3)
        summary.tokens_per_s = round(summary.completion_tokens / summary.seconds, 2) if summary.seconds > 0 else 0.0
    if fatal:
        raise fatal[0]
    if cancel.cancelled:
        raise Cancelled()
    report()


def _result_record(item: BatchPrompt, reply) -> dict:
    stats = reply.stats
    return {
        "id": item.id, **item.source(), "reply": reply.text, "finish_reason": stats.finish_reason,
        "usage": {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
                  "total_tokens": stats.prompt_tokens + stats.completion_tokens},
        "timings": {"ttft_s": round(stats.ttft_s, 4), "total_s": round(stats.total_s, 4),
                    "gen_tokens_per_s": round(stats.gen_tokens_per_s, 2),
                    "prompt_tokens_evaluated": stats.prompt_tokens_evaluated},
    }
