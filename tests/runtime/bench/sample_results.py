"""Benchmark results made by hand, shaped like a real run of one small model (no llama.cpp needed).

Used by the chart, export, summary, store and chart-view tests."""
from __future__ import annotations

from runtime.bench.results import BenchRun, QualityFigures, SpeedFigures, SpeedOptions, Spread, VariantResult

MIB = 1024**2
MACHINE = {"cpu": "AMD EPYC 7B13", "ram_bytes": 8 * 1024**3, "backend": "CPU", "threads": 2,
           "llama_cpp_version": "0.3.36", "build_flags": ["-mno-amx-tile"]}


def variant(quant: str, size_mib: float, tg: list[float] | None, pp: list[float] | None = None,
            ttft: list[float] | None = None, rss_mib: float | None = None, kld: float | None = None,
            top1: float | None = None, ppl: float | None = None, ppl_ratio: float | None = None,
            reference: bool = False, name: str = "SmolLM2-135M-Instruct", status: str = "ok",
            error: str | None = None) -> VariantResult:
    file = f"{name}.{quant}.gguf"
    speed = None
    if tg is not None:
        speed = SpeedFigures(load_s=0.21, pp_tokens_per_s=Spread.of(pp or [t * 3 for t in tg]),
                             tg_tokens_per_s=Spread.of(tg), ttft_s=Spread.of(ttft or [0.042, 0.045, 0.047]),
                             peak_rss_bytes=int((rss_mib or size_mib * 1.4) * MIB), threads=2)
    quality = None
    if ppl is not None:
        quality = QualityFigures(perplexity=ppl, kld_mean=kld, kld_p99=None if kld is None else kld * 9,
                                 top1_agreement=top1, ppl_ratio=ppl_ratio, tokens_scored=4096,
                                 is_reference=reference)
    return VariantResult(path=f"/models/{file}", name=file, quant=quant, size_bytes=int(size_mib * MIB),
                         status=status, error=error, speed=speed, quality=quality)


def sample_results() -> list[VariantResult]:
    """F16 (reference), Q8_0, Q6_K, Q4_K_M, Q4_0 complete; Q2_K failed; Q3_K_M skipped."""
    return [
        variant("F16", 258.0, [48.1, 49.0, 50.2], pp=[610, 622, 630], ttft=[0.061, 0.064, 0.070],
                kld=0.0, top1=1.0, ppl=17.90, ppl_ratio=1.0, reference=True),
        variant("Q8_0", 138.0, [88.3, 90.1, 91.0], pp=[495, 499, 505], kld=0.0011, top1=0.987, ppl=17.93,
                ppl_ratio=1.0017),
        variant("Q6_K", 132.0, [93.0, 95.5, 96.1], pp=[410, 415, 421], kld=0.0042, top1=0.973, ppl=17.99,
                ppl_ratio=1.005),
        variant("Q4_K_M", 84.0, [115.2, 118.9, 121.3], pp=[380, 388, 392], kld=0.031, top1=0.921, ppl=18.61,
                ppl_ratio=1.0397),
        variant("Q4_0", 78.5, [120.0, 124.4, 126.0], pp=[452, 460, 466], kld=0.052, top1=0.897, ppl=19.20,
                ppl_ratio=1.0726),
        variant("Q2_K", 61.0, None, status="failed", error="llama.cpp could not load the file: damaged tensor data"),
        variant("Q3_K_M", 70.0, None, status="skipped",
                error="needs about 9.1 GiB with a 2,048-token context; 6.0 GiB of RAM is free"),
    ]


def sample_run(started_at: float = 1_795_000_000.0, results: list[VariantResult] | None = None) -> BenchRun:
    return BenchRun(machine=dict(MACHINE), options=SpeedOptions(threads=2, reps=3),
                    results=sample_results() if results is None else results, text_name="wiki-sample.txt",
                    reference_path="/models/SmolLM2-135M-Instruct.F16.gguf", started_at=started_at)
