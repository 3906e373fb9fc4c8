"""Export: charts as real PNG and SVG files, figures as CSV and JSON, never a half file."""
from __future__ import annotations

import csv
import json
import os
import xml.etree.ElementTree as ET

import pytest

from runtime.bench.charts import metric_bars, size_quality_scatter
from runtime.bench.export import csv_rows, export_chart, export_csv, export_json, export_markdown
from runtime.bench.results import BenchRun
from runtime.errors import ExportError, WorkbenchError
from tests.runtime.bench.recipe_samples import recipe_run
from tests.runtime.bench.sample_results import sample_results, sample_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".part")]


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_charts_become_real_png_and_svg_files(tmp_path, theme):
    fig = size_quality_scatter(sample_results(), fits=150 * 1024**2, theme=theme)
    png = export_chart(fig, tmp_path / "scatter.png")
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1050, 630)   # 7 x 4.2 inches at 150 dpi

    svg = export_chart(metric_bars(sample_results(), "tg", theme), tmp_path / "bars.SVG")
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "Generation" in svg.read_text(encoding="utf-8")   # text kept as text, searchable
    assert leftovers(tmp_path) == []


def test_a_format_can_be_forced_and_an_unknown_one_is_refused(tmp_path):
    fig = metric_bars(sample_results(), "size")
    assert export_chart(fig, tmp_path / "chart.bin", fmt="png").read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ExportError, match="pdf") as info:
        export_chart(fig, tmp_path / "chart.pdf")
    assert ".png or .svg" in info.value.hint
    assert not (tmp_path / "chart.pdf").exists()


def test_csv_round_trips_the_flat_figures_with_run_and_machine_columns(tmp_path):
    run = sample_run()
    run.run_id = 7
    path = export_csv(run, tmp_path / "figures.csv")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(run.results) == 7
    for row, result in zip(rows, run.results):
        for key, value in result.flat().items():
            if value is None:
                assert row[key] == ""
            elif isinstance(value, (list, dict)):
                assert json.loads(row[key]) == value
            elif isinstance(value, bool):
                assert row[key] == str(value)
            elif isinstance(value, (int, float)):
                assert float(row[key]) == pytest.approx(value, rel=1e-12)
            else:
                assert row[key] == value
        assert row["run_id"] == "7" and row["text_name"] == "wiki-sample.txt"
        assert row["run_started_at"].startswith("2026-11-")
        assert row["machine_cpu"] == "AMD EPYC 7B13" and json.loads(row["machine_build_flags"]) == ["-mno-amx-tile"]
        assert row["option_threads"] == "2" and row["option_reps"] == "3"
    assert rows[5]["status"] == "failed" and "damaged" in rows[5]["error"] and rows[5]["tg_tokens_per_s"] == ""


def test_csv_of_several_runs_has_every_column(tmp_path):
    first, second = sample_run(), sample_run(started_at=1_795_100_000.0)
    second.machine["gpus"] = [{"name": "CUDA0"}]
    rows = csv_rows([first, second])
    assert len(rows) == 14
    path = export_csv([first, second], tmp_path / "history.csv")
    with open(path, newline="", encoding="utf-8") as handle:
        read = list(csv.DictReader(handle))
    assert read[0]["machine_gpus"] == "" and json.loads(read[-1]["machine_gpus"]) == [{"name": "CUDA0"}]


def test_json_round_trips_the_run(tmp_path):
    run = sample_run()
    path = export_json(run, tmp_path / "run.json")
    again = BenchRun.from_dict(json.loads(path.read_text(encoding="utf-8")))
    assert again == run
    both = export_json([run, run], tmp_path / "runs.json")
    assert [BenchRun.from_dict(d) for d in json.loads(both.read_text(encoding="utf-8"))] == [run, run]


def test_no_half_file_when_writing_fails(tmp_path):
    target = tmp_path / "chart.png"
    target.write_bytes(b"the old chart")

    class Boom(Exception):
        pass

    class BrokenFigure:
        def get_facecolor(self):
            return "white"

        def savefig(self, handle, **_kwargs):
            handle.write(b"half a chart")
            raise Boom("renderer died")

    with pytest.raises(Boom):
        export_chart(BrokenFigure(), target)
    assert target.read_bytes() == b"the old chart"   # untouched, and no temporary left behind
    assert leftovers(tmp_path) == []

    class Unserializable:
        def to_dict(self):
            return {"machine": object()}

    with pytest.raises(TypeError):
        export_json([Unserializable()], tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists() and leftovers(tmp_path) == []


def test_csv_writes_batched_and_kv_figures_as_json_cells(tmp_path):
    run = recipe_run()
    path = export_csv(run, tmp_path / "figures.csv")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    q4 = next(row for row in rows if row["quant"] == "Q4_K_M")
    assert [p["n"] for p in json.loads(q4["batched"])] == [1, 2, 4, 8]
    turns = json.loads(q4["kv_reuse"])
    assert turns[1]["evaluated_reuse"] == 38 and turns[1]["ttft_fresh_s"] == pytest.approx(0.09)
    assert rows[0]["engine"] == "pytorch" and rows[0]["kv_reuse"] == "" and rows[0]["batched"] == ""
    assert json.loads(rows[0]["option_parallel"]) == [1, 2, 4, 8] and rows[0]["option_kv_reuse"] == "True"


def test_json_carries_the_recipes_and_still_round_trips(tmp_path):
    run = recipe_run()
    data = json.loads(export_json(run, tmp_path / "run.json").read_text(encoding="utf-8"))
    assert [r["key"] for r in data["recipes"]] == ["half", "int8", "int4", "q8", "batching", "kv_reuse"]
    int8 = data["recipes"][1]
    assert int8["measured"].startswith("INT8 (PyTorch dynamic): 3.6x smaller (peak memory 2.1x lower), 1.4x faster, "
                                       "KLD 0.0042 against FP32")
    assert int8["verdict"] == "partly" and int8["chart"] == "Size vs quality" and int8["claim"]
    assert BenchRun.from_dict(data) == run
    several = json.loads(export_json([run, sample_run()], tmp_path / "runs.json").read_text(encoding="utf-8"))
    assert several[1]["recipes"][0]["verdict"] == "not measured"


def test_markdown_report_has_the_figures_summary_and_recipes(tmp_path):
    path = export_markdown(recipe_run(), tmp_path / "report.md")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Benchmark run of ")
    assert "Machine: cpu: AMD EPYC 7B13; ram: 8.0 GiB" in text and "KV cache reuse: a multi-turn chat" in text
    assert "| Q4_K_M | llama.cpp | 84.0 MiB | 118.9 |" in text and "| INT8 (dynamic) | pytorch |" in text
    assert "## Recipes checked on this machine" in text
    assert "| Reusing the KV cache makes a continued dialogue 2x faster | Q4_K_M: first token 5.7x sooner" in text
    assert leftovers(tmp_path) == []
    failed = export_markdown(sample_run(), tmp_path / "old.md").read_text(encoding="utf-8")
    assert "| Q2_K | llama.cpp | 61.0 MiB |" in failed and "failed: llama.cpp could not load" in failed
    assert "| model.half() halves memory | Tick 'Add original checkpoint'" in failed


def test_json_writes_a_figure_that_is_not_a_number_as_null(tmp_path):
    run = sample_run()
    run.results[0].quality.perplexity = float("inf")
    data = json.loads(export_json(run, tmp_path / "run.json").read_text(encoding="utf-8"))
    assert data["results"][0]["quality"]["perplexity"] is None


def test_unwritable_paths_raise_export_error_with_a_hint(tmp_path):
    fig = metric_bars(sample_results(), "tg")
    with pytest.raises(ExportError, match="does not exist") as info:
        export_chart(fig, tmp_path / "missing" / "chart.png")
    assert isinstance(info.value, (WorkbenchError, OSError)) and info.value.hint
    with pytest.raises(ExportError, match="is a folder"):
        export_csv(sample_run(), tmp_path)
    if os.name == "posix" and os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            with pytest.raises(ExportError, match="Cannot write") as info:
                export_json(sample_run(), locked / "run.json")
            assert info.value.path == str(locked / "run.json") and "folder you can write to" in info.value.hint
        finally:
            locked.chmod(0o700)
        assert list(locked.iterdir()) == []
