"""Where a loaded model really runs: what llama.cpp did, not what was asked for.

llama.cpp states where it put each layer and how big each buffer is only in its log, while it loads
the model and creates the context (the C API has no call for either). ``parse_load_log`` reads those
lines into a ``PlacementReport``; ``report_from_api`` is the fallback when no log was captured (another
log callback installed, a llama.cpp that words them differently): it asks the API what it can (layer
count, model size, whether the build offloads at all). This reads llama.cpp's *decisions*, never GGUF
metadata (that comes from the file, see ``runtime.models.gguf_info``).

The lines, as printed by llama.cpp in llama-cpp-python 0.3.36 (vendor/llama.cpp/src/...):

- llama-model.cpp:1594/1599 (DEBUG)  "load_tensors: layer %3d assigned to device %s, is_swa = %d\\n"
  one line per repeating layer (0..n_layer-1) and one for the output layer (n_layer): the truth.
- llama-model.cpp:1916/1919/1924 (INFO, only when the build has a GPU backend)
  "%s: offloading output layer to GPU\\n", "%s: offloading %d repeating layers to GPU\\n",
  "%s: offloaded %d/%d layers to GPU\\n": what was *asked*, clamped (printed even when no GPU device
  was usable), so it is only used when the per-layer lines are missing, and checked against the buffers.
- llama-model.cpp:1930 "%s: %12s model buffer size = %8.2f MiB\\n"        (weights, per buffer)
- llama-kv-cache.cpp:291 "%s: %10s KV buffer size = %8.2f MiB\\n"         (KV cache)
- llama-memory-recurrent.cpp:124 "%s: %10s RS buffer size = %8.2f MiB\\n" (recurrent state)
- llama-context.cpp:381 "%s: %10s  output buffer size = %8.2f MiB\\n"     (logits and embeddings)
- llama-context.cpp:740 "%s: %10s compute buffer size = %8.2f MiB\\n"     (scratch for one batch)

Buffer names are ggml's buffer (type) names: "CPU", "CPU_Mapped" (the memory-mapped file),
"CPU_REPACK"; "CUDA0", "CUDA_Host" (pinned host memory); "MTL0", "MTL0_Mapped", "MTL0_Private"
(Metal); "Vulkan0", "Vulkan_Host". ``device_of`` turns them into the device that holds the memory.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

CPU = "CPU"
MIB = 1024 * 1024

_LAYER_RE = re.compile(r"load_tensors: layer\s+(\d+) assigned to device (\S+?),")
_OFFLOADED_RE = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")
# "<function>: <buffer> <kind> buffer size = <MiB> MiB"; the function is not matched (it differs between
# versions: llama_context, sched_reserve), nor the line start (progress dots may precede it)
_BUFFER_RE = re.compile(
    r"(?P<buffer>[^\s:.]\S*)\s+(?P<kind>model|KV|RS|output|compute) buffer size\s*=\s*(?P<mib>\d+(?:\.\d+)?) MiB")
_SUFFIXES = ("_Mapped", "_Private", "_Split", "_REPACK")

# words for each kind of buffer, in the order a summary lists them ("output" joins "compute")
KIND_WORDS = {"model": "model", "KV": "KV cache", "RS": "recurrent state", "compute": "work buffers"}


def device_of(buffer: str) -> str:
    """The device whose memory holds a buffer: "CPU_Mapped" -> "CPU", "CUDA_Host" -> "CPU" (pinned
    host memory), "MTL0_Mapped" -> "MTL0", "CUDA0" -> "CUDA0"."""
    if buffer.upper().startswith(CPU) or buffer.endswith("_Host"):
        return CPU
    for suffix in _SUFFIXES:
        if buffer.endswith(suffix):
            return buffer[: -len(suffix)]
    return buffer


@dataclass
class BufferUse:
    """One buffer llama.cpp allocated: where, for what, how big."""

    device: str     # "CPU", "CUDA0", "MTL0", ...
    kind: str       # "model", "KV", "RS", "output" or "compute" (llama.cpp's own words)
    bytes: int
    buffer: str = ""  # ggml's buffer name: "CPU_Mapped", "CUDA_Host", ...


@dataclass
class PlacementReport:
    """What llama.cpp did with a loaded model: layers on each device and the buffers it allocated.

    Layers count like llama.cpp: n_layer repeating layers plus the output layer. ``source`` says where
    the facts come from: "log" (llama.cpp's own lines) or "api" (the fallback: layer count and model
    size from the API; buffers other than the weights unknown).
    """

    layers_offloaded: int
    layers_total: int
    buffers: list[BufferUse] = field(default_factory=list)
    layer_devices: dict[str, int] = field(default_factory=dict)  # device -> layers, when the log says
    gpu_backend: bool = False  # this llama.cpp build can offload at all
    source: str = "log"

    # -- figures ---------------------------------------------------------------------------------

    def bytes_of(self, kind: str | None = None, device: str | None = None) -> int:
        """Bytes of the buffers of ``kind`` ("model", "KV", ...; "compute" includes "output") on
        ``device`` (None: any)."""
        kinds = {"compute", "output"} if kind == "compute" else {kind}
        return sum(b.bytes for b in self.buffers
                   if (kind is None or b.kind in kinds) and (device is None or b.device == device))

    @property
    def model_bytes(self) -> int:
        return self.bytes_of("model")

    @property
    def devices(self) -> list[str]:
        """Devices that hold layers or buffers, GPUs first, in the order llama.cpp named them."""
        seen = [d for d, n in self.layer_devices.items() if n] + [b.device for b in self.buffers]
        ordered = list(dict.fromkeys(seen))
        return [d for d in ordered if d != CPU] + [d for d in ordered if d == CPU]

    @property
    def gpu_devices(self) -> list[str]:
        return [d for d in self.devices if d != CPU]

    @property
    def layers_on_cpu(self) -> int:
        return max(0, self.layers_total - self.layers_offloaded)

    # -- words -----------------------------------------------------------------------------------

    def layers_text(self) -> str:
        """"CPU: all 31 layers", "CUDA0: all 31 layers", "CUDA0: 10 of 31 layers, CPU: 21"."""
        total = self.layers_total
        on_gpu = {d: n for d, n in self.layer_devices.items() if d != CPU and n}
        if not on_gpu and self.layers_offloaded:  # counts from the "offloaded N/M" line only
            on_gpu = {"+".join(self.gpu_devices) or "GPU": self.layers_offloaded}
        if not on_gpu:
            return f"CPU: all {total} layers" if total else "CPU"
        parts = [f"{d}: {n}" for d, n in on_gpu.items()]
        if self.layers_on_cpu == 0 and len(on_gpu) == 1:
            return f"{next(iter(on_gpu))}: all {total} layers"
        text = ", ".join(parts) + f" of {total} layers"
        return text + (f", CPU: {self.layers_on_cpu}" if self.layers_on_cpu else "")

    def buffers_text(self) -> str:
        """"model 92 MiB, KV cache 45 MiB, work buffers 103 MiB on the CPU"; one group per device."""
        groups = []
        for device in self.devices:
            parts = [f"{words} {format_mib(self.bytes_of(kind, device))}" for kind, words in KIND_WORDS.items()
                     if self.bytes_of(kind, device)]
            if parts:
                groups.append(f"{', '.join(parts)} on {'the CPU' if device == CPU else device}")
        return "; ".join(groups)

    def summary(self) -> str:
        """Layers and buffers in words: "CPU: all 31 layers · model 92 MiB, KV cache 45 MiB, work
        buffers 103 MiB on the CPU"."""
        buffers = self.buffers_text()
        return self.layers_text() + (f" · {buffers}" if buffers else "")

    def placement(self, requested_gpu_layers: int | None = None) -> str:
        """Short: "CPU", "CUDA0: 31/31 layers", "CUDA0: 10/31 layers, 21 on the CPU", plus what was asked
        for when llama.cpp did otherwise (see ``requested_note``)."""
        gpus = [d for d, n in self.layer_devices.items() if d != CPU and n] or self.gpu_devices
        if not self.layers_offloaded:
            text = CPU
        else:
            text = f"{'+'.join(gpus) or 'GPU'}: {self.layers_offloaded}/{self.layers_total} layers"
            if self.layers_on_cpu:
                text += f", {self.layers_on_cpu} on the CPU"
        note = self.requested_note(requested_gpu_layers)
        return f"{text} ({note})" if note else text

    def requested_layers(self, requested_gpu_layers: int | None) -> int | None:
        """How many layers ``n_gpu_layers`` asks for, counted like llama.cpp (negative: all)."""
        if requested_gpu_layers is None:
            return None
        if requested_gpu_layers < 0:
            return self.layers_total
        return min(requested_gpu_layers, self.layers_total) if self.layers_total else requested_gpu_layers

    def requested_note(self, requested_gpu_layers: int | None) -> str:
        """'' when llama.cpp offloaded what was asked, else e.g. "asked for all GPU layers; llama.cpp
        offloaded 0: this build has no GPU backend"."""
        wanted = self.requested_layers(requested_gpu_layers)
        if wanted is None or wanted == self.layers_offloaded:
            return ""
        asked = "all GPU layers" if requested_gpu_layers < 0 else (
            f"{requested_gpu_layers} GPU layer{'s' if requested_gpu_layers != 1 else ''}")
        text = f"asked for {asked}; llama.cpp offloaded {self.layers_offloaded}"
        if not self.gpu_backend:
            return text + ": this build has no GPU backend"
        if not self.layers_offloaded:
            return text + ": it found no GPU it could use"
        return text

    # -- JSON ------------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """JSON-safe, with the summary in words (for the engine's ready event)."""
        return {"layers_offloaded": self.layers_offloaded, "layers_total": self.layers_total,
                "layers_on_cpu": self.layers_on_cpu, "layer_devices": dict(self.layer_devices),
                "gpu_backend": self.gpu_backend, "source": self.source,
                "buffers": [{"device": b.device, "kind": b.kind, "bytes": b.bytes, "buffer": b.buffer}
                            for b in self.buffers],
                "summary": self.summary()}

    @classmethod
    def from_dict(cls, data: dict) -> "PlacementReport | None":
        """The report ``to_dict`` wrote (None when ``data`` is not one: an older engine, garbage)."""
        try:
            buffers = [BufferUse(str(b["device"]), str(b["kind"]), int(b["bytes"]), str(b.get("buffer", "")))
                       for b in data.get("buffers", [])]
            return cls(int(data["layers_offloaded"]), int(data["layers_total"]), buffers,
                       {str(k): int(v) for k, v in (data.get("layer_devices") or {}).items()},
                       bool(data.get("gpu_backend")), str(data.get("source", "log")))
        except (AttributeError, KeyError, TypeError, ValueError):
            return None


def format_mib(n_bytes: int) -> str:
    """Sizes for a status line: "0.2 MiB", "92 MiB", "1.5 GiB"."""
    mib = n_bytes / MIB
    if mib >= 1024:
        return f"{mib / 1024:.1f} GiB"
    if mib >= 10:
        return f"{mib:.0f} MiB"
    return f"{mib:.1f} MiB"


def parse_load_log(text: str, *, n_layer: int | None = None, gpu_backend: bool | None = None
                   ) -> PlacementReport | None:
    """The placement llama.cpp's log of one model load (and context creation) states; None when the
    text holds none of its lines (then use ``report_from_api``).

    ``n_layer``: the model's repeating layers (``llama_model_n_layer``), for the total when the log
    does not give it; ``gpu_backend``: whether the build can offload (``llama_supports_gpu_offload``),
    default: whether the log says it offloaded or names a GPU buffer.
    """
    layers: dict[int, str] = {}
    for match in _LAYER_RE.finditer(text):
        layers[int(match.group(1))] = match.group(2)
    buffers = [BufferUse(device_of(m["buffer"]), m["kind"], round(float(m["mib"]) * MIB), m["buffer"])
               for m in _BUFFER_RE.finditer(text)]
    offloaded_line = _OFFLOADED_RE.findall(text)
    if not layers and not buffers and not offloaded_line:
        return None
    total = len(layers) if layers else 0
    if offloaded_line:
        total = max(total, int(offloaded_line[-1][1]))
    if n_layer is not None and n_layer > 0:
        total = max(total, n_layer + 1)
    layer_devices: dict[str, int] = {}
    if layers:
        for device in layers.values():
            layer_devices[device] = layer_devices.get(device, 0) + 1
        offloaded = sum(n for d, n in layer_devices.items() if d != CPU)
    elif offloaded_line:
        # Printed as asked (clamped), even when no GPU device was usable: trust it only if some
        # weights really went to a GPU.
        gpu_weights = any(b.device != CPU and b.kind == "model" for b in buffers)
        offloaded = int(offloaded_line[-1][0]) if gpu_weights else 0
    else:  # a build without a GPU backend prints no offload line at all
        offloaded = 0
    if gpu_backend is None:
        gpu_backend = bool(offloaded_line) or any(b.device != CPU for b in buffers)
    return PlacementReport(offloaded, total, buffers, layer_devices, gpu_backend, "log")


def report_from_api(llama_cpp, model, requested_gpu_layers: int) -> PlacementReport:
    """The fallback: what the API tells about a loaded ``model`` (no per-device buffers).

    Without a GPU backend nothing is offloaded, whatever was asked; with one, the request (clamped to
    the layers there are) is the best figure there is.
    """
    total = int(llama_cpp.llama_model_n_layer(model)) + 1
    gpu_backend = bool(llama_cpp.llama_supports_gpu_offload())
    if not gpu_backend or requested_gpu_layers == 0:
        offloaded = 0
    else:
        offloaded = total if requested_gpu_layers < 0 else min(requested_gpu_layers, total)
    size = int(llama_cpp.llama_model_size(model))
    # where the weights went is known only when nothing was offloaded
    buffers = [BufferUse(CPU, "model", size, "")] if size > 0 and not offloaded else []
    return PlacementReport(offloaded, total, buffers, {}, gpu_backend, "api")
