"""How fast Stop takes effect, at each stage of a reply, through the app's real chat path.

    .venv/bin/python benchmarks/stop_latency.py [--runs N] [--threads N]

Stages: the chat template rendering (a copy of the starter whose template loops for minutes), the
prompt evaluation (a ~2,700-token prompt, ~10 s on 2 cores) and the generation (mid-reply). For each,
Stop is pressed (the cancel token the Chat tab uses) and two figures are taken: how long until
``stream_chat`` returned, and how long until the engine answered the next short request (minus the
time that request takes on an idle engine): the engine really stopped working. The promise is
100 ms for both. Not a test: run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "tests"))

from runtime.engine.local import LocalEngine  # noqa: E402
from runtime.engine.types import LoadOptions, SamplingParams  # noqa: E402
from runtime.jobs import CancelToken  # noqa: E402
from runtime.models.library import starter_model_path  # noqa: E402
from starter_variants import write_starter_variant  # noqa: E402

SLOW_TEMPLATE = ("{% if messages[0]['content'] == 'slow' %}{% for i in range(100000) %}{% for j in range(100000) %}"
                 "{% endfor %}{% endfor %}{% endif %}"
                 "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "<|im_start|>assistant\n")
LONG = "Summarise this text. " + "The quick brown fox jumps over the lazy dog. " * 300
PING = [{"role": "user", "content": "Hi"}]
PING_PARAMS = SamplingParams(temperature=0, max_tokens=1)


def stop_once(engine: LocalEngine, messages, delay_s: float, params: SamplingParams,
              first_text: bool = False) -> tuple[float, float]:
    """Press Stop ``delay_s`` after the request (or after the first text); return (to return, to free)."""
    client, cancel = engine.client(), CancelToken()
    pressed: list[float] = []

    def press():
        pressed.append(time.perf_counter())
        cancel.cancel()

    def on_text(_text):
        if first_text and not pressed:
            threading.Timer(delay_s, press).start()

    if not first_text:
        threading.Timer(delay_s, press).start()
    client.stream_chat(messages, params, on_text=on_text, cancel=cancel)
    returned = time.perf_counter()
    client.stream_chat(PING, PING_PARAMS)
    freed = time.perf_counter()
    return returned - pressed[0], freed - pressed[0]


def idle_ping(engine: LocalEngine) -> float:
    times = []
    for _ in range(5):
        started = time.perf_counter()
        engine.client().stream_chat(PING, PING_PARAMS)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=LoadOptions().n_threads)
    args = parser.parse_args()
    starter = starter_model_path()
    with tempfile.TemporaryDirectory() as folder:
        model = write_starter_variant(starter, Path(folder), "slow-template.gguf", chat_template=SLOW_TEMPLATE)
        with LocalEngine(model, LoadOptions(n_ctx=4096, n_threads=args.threads)) as engine:
            ping = idle_ping(engine)
            stages = {
                "template rendering": lambda: stop_once(engine, [{"role": "user", "content": "slow"}], 0.3,
                                                        SamplingParams(max_tokens=8)),
                "prompt evaluation": lambda: stop_once(engine, [{"role": "user", "content": LONG}], 0.3,
                                                       SamplingParams(max_tokens=8)),
                "generation": lambda: stop_once(engine, [{"role": "user", "content": "Write a long story."}],
                                                0.2, SamplingParams(max_tokens=400, seed=1), first_text=True),
            }
            print(f"Stop latency, {args.runs} runs per stage, idle short reply {ping * 1000:.0f} ms "
                  f"(subtracted from 'engine free')")
            print(f"{'stage':<20} {'to return (median / max)':>26} {'engine free (median / max)':>28}")
            for name, run in stages.items():
                results = [run() for _ in range(args.runs)]
                back = [r[0] * 1000 for r in results]
                free = [max(0.0, r[1] - ping) * 1000 for r in results]
                print(f"{name:<20} {statistics.median(back):>12.1f} / {max(back):>6.1f} ms "
                      f"{statistics.median(free):>14.1f} / {max(free):>6.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
