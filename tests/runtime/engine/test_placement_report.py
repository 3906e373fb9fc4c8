"""Where the model really runs: llama.cpp's load log parsed into a PlacementReport, on log text this
build really printed (CPU), on CUDA and Metal logs written with llama.cpp's own printf formats, and on
the real engine with the starter model."""
from __future__ import annotations

import json
import os
import types

import pytest

from runtime.engine.placement import (
    CPU, MIB, BufferUse, PlacementReport, device_of, format_mib, parse_load_log, report_from_api,
)
from runtime.engine.types import LoadOptions, SamplingParams

# Captured from this build (llama-cpp-python 0.3.36, CPU only) loading the starter model with n_ctx
# 2048 (the log callback receives DEBUG lines too); lines in between are left out where marked.
CPU_LOG = (
    "llama_model_loader: loaded meta data with 32 key-value pairs and 272 tensors from SmolLM2-135M-Instruct.Q4_1.gguf (version GGUF V3 (latest))\n"
    "print_info: n_layer               = 30\n"
    + "".join(f"load_tensors: layer {i:3d} assigned to device CPU, is_swa = 0\n" for i in range(31))
    + "create_tensor: loading tensor token_embd.weight\n"
    "done_getting_tensors: tensor 'token_embd.weight' (q8_0) (and 272 others) cannot be used with preferred "
    "buffer type CPU_REPACK, using CPU instead\n"
    "load_tensors:   CPU_Mapped model buffer size =    92.10 MiB\n"
    + "." * 70 + "\n"
    "llama_context: constructing llama_context\n"
    "llama_context: n_ctx                 = 2048\n"
    "set_abort_callback: call\n"
    "llama_context:        CPU  output buffer size =     0.19 MiB\n"
    + "".join(f"llama_kv_cache: layer {i:3d}: dev = CPU\n" for i in range(30))
    + "llama_kv_cache:        CPU KV buffer size =    45.00 MiB\n"
    "llama_kv_cache: size =   45.00 MiB (  2048 cells,  30 layers,  1/1 seqs), K (f16):   22.50 MiB, V (f16):   22.50 MiB\n"
    "sched_reserve: graph_reserve: reserving a graph for ubatch with n_tokens =  512, n_seqs =  1, n_outputs =  512\n"
    "sched_reserve:        CPU compute buffer size =   102.51 MiB\n"
    "sched_reserve: graph: nodes = 936, splits = 1, input objects = 4, input tensors = 6\n"
)


# --- logs of GPU builds, written with llama.cpp's own formats -----------------------------------
# The formats, verbatim from llama-cpp-python 0.3.36's vendor/llama.cpp/src:
#   llama-model.cpp:1599    "load_tensors: layer %3d assigned to device %s, is_swa = %d\n"   (DEBUG)
#   llama-model.cpp:1916    "%s: offloading output layer to GPU\n"
#   llama-model.cpp:1919    "%s: offloading %d repeating layers to GPU\n"
#   llama-model.cpp:1924    "%s: offloaded %d/%d layers to GPU\n"
#   llama-model.cpp:1930    "%s: %12s model buffer size = %8.2f MiB\n"
#   llama-context.cpp:381   "%s: %10s  output buffer size = %8.2f MiB\n"
#   llama-kv-cache.cpp:291  "%s: %10s KV buffer size = %8.2f MiB\n"
#   llama-context.cpp:740   "%s: %10s compute buffer size = %8.2f MiB\n"
# Buffer names: ggml-cuda.cu "CUDA%d" and "CUDA_Host"; ggml-metal.cpp "MTL%d", "MTL%d_Mapped".

def _layers(devices: list[str]) -> str:
    return "".join("load_tensors: layer %3d assigned to device %s, is_swa = %d\n" % (i, d, 0)
                   for i, d in enumerate(devices))


def _offload_lines(n_gpu_layers: int, n_layer: int) -> str:
    """What load_tensors prints on a build with a GPU backend (llama-model.cpp:1911-1925)."""
    n_repeating = min(n_gpu_layers, n_layer)
    text = ""
    if n_repeating > 0:
        text += "%s: offloading output layer to GPU\n" % "load_tensors"
        n_repeating -= 1
    text += "%s: offloading %d repeating layers to GPU\n" % ("load_tensors", n_repeating)
    return text + "%s: offloaded %d/%d layers to GPU\n" % ("load_tensors", min(n_gpu_layers, n_layer + 1), n_layer + 1)


def _model(name: str, mib: float) -> str:
    return "%s: %12s model buffer size = %8.2f MiB\n" % ("load_tensors", name, mib)


def _context(output: str, kv: list[tuple[str, float]], compute: list[tuple[str, float]]) -> str:
    text = "%s: %10s  output buffer size = %8.2f MiB\n" % ("llama_context", output, 0.19)
    text += "".join("%s: %10s KV buffer size = %8.2f MiB\n" % ("llama_kv_cache", n, m) for n, m in kv)
    return text + "".join("%s: %10s compute buffer size = %8.2f MiB\n" % ("sched_reserve", n, m) for n, m in compute)


CUDA_FULL_LOG = (_layers(["CUDA0"] * 31) + _offload_lines(31, 30)
                 + _model("CUDA0", 92.10) + _model("CPU_Mapped", 28.12)
                 + _context("CUDA_Host", [("CUDA0", 45.0)], [("CUDA0", 98.0), ("CUDA_Host", 4.51)]))
CUDA_PARTIAL_LOG = (_layers(["CPU"] * 21 + ["CUDA0"] * 10) + _offload_lines(10, 30)
                    + _model("CUDA0", 30.5) + _model("CPU_Mapped", 92.10)
                    + _context("CUDA_Host", [("CUDA0", 15.0), ("CPU", 30.0)], [("CUDA0", 98.0), ("CUDA_Host", 6.0)]))
TWO_GPUS_LOG = (_layers(["CUDA0"] * 16 + ["CUDA1"] * 15) + _offload_lines(31, 30)
                + _model("CUDA0", 48.0) + _model("CUDA1", 44.1) + _model("CPU_Mapped", 28.12)
                + _context("CUDA_Host", [("CUDA0", 24.0), ("CUDA1", 21.0)], [("CUDA0", 98.0), ("CUDA1", 98.0)]))
METAL_LOG = (_layers(["MTL0"] * 31) + _offload_lines(31, 30)
             + _model("MTL0_Mapped", 92.10) + _model("CPU_Mapped", 28.12)
             + _context("MTL0", [("MTL0", 45.0)], [("MTL0", 102.5), ("CPU", 4.0)]))
# A GPU build whose GPU could not be used: the offload line states what was asked (printed before
# and regardless of the devices found), the buffers what was done. INFO level only: no layer lines.
GPU_BUILD_NO_DEVICE_LOG = (_offload_lines(1000, 30) + _model("CPU_Mapped", 92.10)
                           + _context("CPU", [("CPU", 45.0)], [("CPU", 102.51)]))


# --- the CPU log of this build --------------------------------------------------------------------

def test_the_cpu_log_of_this_build():
    report = parse_load_log(CPU_LOG, n_layer=30, gpu_backend=False)
    assert (report.layers_offloaded, report.layers_total, report.layers_on_cpu) == (0, 31, 31)
    assert report.layer_devices == {"CPU": 31} and report.devices == ["CPU"] and report.source == "log"
    assert [(b.device, b.kind, b.buffer) for b in report.buffers] == [
        ("CPU", "model", "CPU_Mapped"), ("CPU", "output", "CPU"), ("CPU", "KV", "CPU"), ("CPU", "compute", "CPU")]
    assert report.model_bytes == round(92.10 * MIB)
    assert report.bytes_of("KV") == 45 * MIB
    assert report.bytes_of("compute") == round(102.51 * MIB) + round(0.19 * MIB)  # output joins compute
    assert report.summary() == "CPU: all 31 layers · model 92 MiB, KV cache 45 MiB, work buffers 103 MiB on the CPU"
    assert report.placement(0) == "CPU"


def test_gpu_layers_asked_of_this_cpu_build_are_named():
    report = parse_load_log(CPU_LOG, n_layer=30, gpu_backend=False)
    assert report.requested_note(0) == "" and report.requested_note(None) == ""
    assert report.placement(-1) == "CPU (asked for all GPU layers; llama.cpp offloaded 0: this build has no GPU backend)"
    assert report.requested_note(1) == "asked for 1 GPU layer; llama.cpp offloaded 0: this build has no GPU backend"


def test_the_layer_count_comes_from_the_api_when_the_log_lacks_it():
    only_buffers = "load_tensors:   CPU_Mapped model buffer size =    92.10 MiB\n"
    report = parse_load_log(only_buffers, n_layer=30, gpu_backend=False)
    assert (report.layers_offloaded, report.layers_total) == (0, 31)
    assert report.summary() == "CPU: all 31 layers · model 92 MiB on the CPU"


def test_progress_dots_before_a_line_do_not_hide_it():
    report = parse_load_log("......load_tensors:   CPU_Mapped model buffer size =    92.10 MiB\n")
    assert report.model_bytes == round(92.10 * MIB)


# --- GPU logs ----------------------------------------------------------------------------------

def test_cuda_all_layers():
    report = parse_load_log(CUDA_FULL_LOG, n_layer=30, gpu_backend=True)
    assert (report.layers_offloaded, report.layers_total, report.layers_on_cpu) == (31, 31, 0)
    assert report.devices == ["CUDA0", "CPU"] and report.gpu_devices == ["CUDA0"]
    assert report.bytes_of("model", "CUDA0") == round(92.10 * MIB)
    assert report.bytes_of("model", CPU) == round(28.12 * MIB)  # the token embeddings stay on the CPU
    assert report.bytes_of("compute", CPU) == round(4.51 * MIB) + round(0.19 * MIB)  # CUDA_Host: pinned RAM
    assert report.placement(-1) == "CUDA0: 31/31 layers"
    assert report.summary() == ("CUDA0: all 31 layers · model 92 MiB, KV cache 45 MiB, work buffers 98 MiB on "
                                "CUDA0; model 28 MiB, work buffers 4.7 MiB on the CPU")


def test_cuda_some_layers():
    report = parse_load_log(CUDA_PARTIAL_LOG, n_layer=30, gpu_backend=True)
    assert (report.layers_offloaded, report.layers_on_cpu) == (10, 21)
    assert report.layer_devices == {"CPU": 21, "CUDA0": 10}
    assert report.placement(10) == "CUDA0: 10/31 layers, 21 on the CPU"
    assert report.layers_text() == "CUDA0: 10 of 31 layers, CPU: 21"
    assert report.bytes_of("KV", "CUDA0") == 15 * MIB and report.bytes_of("KV", CPU) == 30 * MIB


def test_two_gpus():
    report = parse_load_log(TWO_GPUS_LOG, n_layer=30, gpu_backend=True)
    assert report.layers_offloaded == 31 and report.layer_devices == {"CUDA0": 16, "CUDA1": 15}
    assert report.placement(-1) == "CUDA0+CUDA1: 31/31 layers"
    assert report.layers_text() == "CUDA0: 16, CUDA1: 15 of 31 layers"
    assert report.summary().count(" on CUDA") == 2


def test_metal_on_apple_silicon():
    report = parse_load_log(METAL_LOG, n_layer=30, gpu_backend=True)
    assert report.layers_offloaded == 31 and report.gpu_devices == ["MTL0"]
    assert report.bytes_of("model", "MTL0") == round(92.10 * MIB)  # MTL0_Mapped: the file, mapped for Metal
    assert report.placement(-1) == "MTL0: 31/31 layers"
    assert report.summary() == ("MTL0: all 31 layers · model 92 MiB, KV cache 45 MiB, work buffers 103 MiB on MTL0; "
                                "model 28 MiB, work buffers 4.0 MiB on the CPU")


def test_a_gpu_build_that_found_no_gpu_did_not_offload():
    report = parse_load_log(GPU_BUILD_NO_DEVICE_LOG, n_layer=30, gpu_backend=True)
    assert report.layers_offloaded == 0 and report.layers_total == 31  # whatever "offloaded 31/31" said
    assert report.placement(-1) == "CPU (asked for all GPU layers; llama.cpp offloaded 0: it found no GPU it could use)"


def test_the_offload_line_counts_when_there_are_no_layer_lines():
    text = _offload_lines(10, 30) + _model("CUDA0", 30.5) + _model("CPU_Mapped", 92.10)
    report = parse_load_log(text, n_layer=30, gpu_backend=True)
    assert (report.layers_offloaded, report.layers_total) == (10, 31)
    assert report.placement(10) == "CUDA0: 10/31 layers, 21 on the CPU"


@pytest.mark.parametrize("buffer, device", [
    ("CPU", "CPU"), ("CPU_Mapped", "CPU"), ("CPU_REPACK", "CPU"), ("CUDA_Host", "CPU"), ("Vulkan_Host", "CPU"),
    ("CUDA0", "CUDA0"), ("CUDA1", "CUDA1"), ("MTL0", "MTL0"), ("MTL0_Mapped", "MTL0"), ("MTL0_Private", "MTL0"),
    ("Vulkan0", "Vulkan0"),
])
def test_device_of_a_buffer(buffer, device):
    assert device_of(buffer) == device


@pytest.mark.parametrize("text", ["", "nothing of interest\n", "load_tensors: loading model tensors, this can take a while\n",
                                  "sched_reserve:        CPU compute buffer size is   102.5100 MiB, matches expectation\n"])
def test_a_log_without_placement_lines_gives_none(text):
    assert parse_load_log(text, n_layer=30) is None


def test_format_mib():
    assert [format_mib(n) for n in (round(0.19 * MIB), 92 * MIB, 1536 * MIB)] == ["0.2 MiB", "92 MiB", "1.5 GiB"]


# --- JSON and the API fallback -------------------------------------------------------------------

def test_the_report_travels_as_json():
    report = parse_load_log(CUDA_PARTIAL_LOG, n_layer=30, gpu_backend=True)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["summary"] == report.summary() and data["layers_on_cpu"] == 21
    assert PlacementReport.from_dict(data) == report
    for garbage in ({}, {"layers_offloaded": "x", "layers_total": 3}, {"layers_offloaded": 1, "layers_total": 2,
                                                                          "buffers": [{"device": "CPU"}]}):
        assert PlacementReport.from_dict(garbage) is None


def _fake_llama_cpp(gpu: bool):
    return types.SimpleNamespace(llama_model_n_layer=lambda m: 30, llama_supports_gpu_offload=lambda: gpu,
                                 llama_model_size=lambda m: 96_576_768)


def test_the_api_fallback_on_a_cpu_build():
    report = report_from_api(_fake_llama_cpp(False), object(), -1)
    assert (report.layers_offloaded, report.layers_total, report.source) == (0, 31, "api")
    assert report.buffers == [BufferUse(CPU, "model", 96_576_768, "")]
    assert report.summary() == "CPU: all 31 layers · model 92 MiB on the CPU"
    assert report.requested_note(-1).endswith("this build has no GPU backend")


def test_the_api_fallback_on_a_gpu_build_takes_the_request():
    report = report_from_api(_fake_llama_cpp(True), object(), 10)
    assert (report.layers_offloaded, report.layers_total, report.buffers) == (10, 31, [])
    assert report.placement(10) == "GPU: 10/31 layers, 21 on the CPU"


# --- the real engine --------------------------------------------------------------------------------

def test_the_engine_reports_what_llama_cpp_did_with_the_starter(starter_model):
    from runtime.engine.local import LocalEngine
    from runtime.models.gguf_info import read_gguf_info

    with LocalEngine(starter_model, LoadOptions(n_ctx=512, n_threads=2, n_gpu_layers=-1)) as engine:
        report = engine.offload
        assert report is not None and report.source == "log"  # read from llama.cpp's own lines
        n_layer = read_gguf_info(starter_model).block_count
        assert (report.layers_offloaded, report.layers_total) == (0, n_layer + 1)  # CPU-only build
        assert report.layer_devices == {"CPU": n_layer + 1} and not report.gpu_backend
        assert report.buffers and all(b.bytes > 0 and b.device == "CPU" for b in report.buffers)
        size = os.path.getsize(starter_model)
        assert abs(report.model_bytes - size) <= 0.10 * size
        assert report.bytes_of("KV") > 0 and report.bytes_of("compute") > 0
        assert engine.requested_gpu_layers == -1
        assert engine.placement == report.placement(-1) == (
            "CPU (asked for all GPU layers; llama.cpp offloaded 0: this build has no GPU backend)")
        assert engine.ready_info["offload"]["summary"] == report.summary()
        reply = engine.client().stream_chat([{"role": "user", "content": "Hi"}],
                                            SamplingParams(temperature=0, max_tokens=4))
        assert reply.text  # it runs where it says


def test_the_runner_asks_the_api_when_the_log_says_nothing():
    from runtime.engine.runner import LlamaRunner

    runner = types.SimpleNamespace(_ll=_fake_llama_cpp(False), model=object(), options=LoadOptions(n_gpu_layers=8))
    report = LlamaRunner._placement_from(runner, "some other logger got the lines\n")
    assert (report.source, report.layers_offloaded, report.layers_total, report.model_bytes) == ("api", 0, 31, 96_576_768)
    assert LlamaRunner._placement_from(runner, CPU_LOG).source == "log"
