"""A benchmark run made by hand with every figure the recipes read: the original checkpoint in PyTorch
(FP32, BF16, dynamic INT8), GGUF variants, batched generation and KV cache reuse. Shaped like a run
of the starter-sized model on a 2-core machine; no model runs.

Used by the recipe, export and recipes-page tests."""
from __future__ import annotations

from runtime.bench.results import BatchedPoint, BenchRun, KvTurn, SpeedOptions, VariantResult
from tests.runtime.bench.sample_results import MACHINE, variant


def torch_row(quant: str, size_mib: float, tg: list[float], rss_mib: float, **quality) -> VariantResult:
    row = variant(quant, size_mib, tg, rss_mib=rss_mib, **quality)
    row.engine = "pytorch"
    row.path = "/models/SmolLM2-135M-Instruct"
    row.name = f"SmolLM2-135M-Instruct ({quant}, PyTorch)"
    return row


def batched(one: float, four: float, eight: float | None = None) -> list[BatchedPoint]:
    points = [BatchedPoint(1, one, one), BatchedPoint(2, one * 1.5, one * 0.75), BatchedPoint(4, four, four / 4)]
    if eight is not None:
        points.append(BatchedPoint(8, eight, eight / 8))
    return points


def kv_turns(first_s: float = 0.050, per_turn_s: float = 0.040, reuse_s: float = 0.030, turns: int = 6) -> list[KvTurn]:
    """Fresh TTFT grows with the conversation; reused stays about flat (only the new question)."""
    out = []
    for t in range(1, turns + 1):
        fresh = first_s + per_turn_s * (t - 1)
        prompt = 60 + 70 * (t - 1)
        out.append(KvTurn(turn=t, prompt_tokens=prompt, ttft_reuse_s=fresh if t == 1 else reuse_s,
                          ttft_fresh_s=fresh, evaluated_reuse=prompt if t == 1 else 38, evaluated_fresh=prompt))
    return out


def recipe_results() -> list[VariantResult]:
    fp32 = torch_row("FP32", 516.0, [20.0, 21.0, 22.0], 1100.0, kld=0.0, top1=1.0, ppl=17.80, ppl_ratio=1.0,
                     reference=True)
    bf16 = torch_row("BF16", 258.0, [14.0, 15.0, 15.5], 700.0, kld=0.0009, top1=0.991, ppl=17.82, ppl_ratio=1.0011)
    int8 = torch_row("INT8 (dynamic)", 143.3, [28.0, 29.4, 30.0], 520.0, kld=0.0042, top1=0.978, ppl=17.91,
                     ppl_ratio=1.0062)
    f16 = variant("F16", 258.0, [48.1, 49.0, 50.2], kld=0.0008, top1=0.992, ppl=17.81, ppl_ratio=1.0006)
    q8 = variant("Q8_0", 138.0, [88.3, 90.1, 91.0], kld=0.0011, top1=0.987, ppl=17.83, ppl_ratio=1.0017)
    q4km = variant("Q4_K_M", 84.0, [115.2, 118.9, 121.3], kld=0.031, top1=0.921, ppl=18.61, ppl_ratio=1.0455)
    q4km.batched = batched(94.0, 162.0, 210.0)
    q4km.kv_reuse = kv_turns()
    q40 = variant("Q4_0", 78.5, [120.0, 124.4, 126.0], kld=0.052, top1=0.897, ppl=19.20, ppl_ratio=1.0787)
    return [fp32, bf16, int8, f16, q8, q4km, q40]


def recipe_run(results: list[VariantResult] | None = None) -> BenchRun:
    options = SpeedOptions(threads=2, reps=3, parallel=[1, 2, 4, 8], kv_reuse=True)
    return BenchRun(machine=dict(MACHINE), options=options,
                    results=recipe_results() if results is None else results, text_name="wiki-sample.txt",
                    reference_path="/models/SmolLM2-135M-Instruct", started_at=1_795_000_000.0)

