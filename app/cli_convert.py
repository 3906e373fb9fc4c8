"""`workbench convert`: turn a Hugging Face checkpoint folder into one GGUF file.

Everything is checked before writing starts (the config, the architecture, the tokenizer, every
tensor, the free disk space); stderr then shows what will be made and the progress per tensor; stdout
gets the output path (with --json: one object). The file appears under its name only once complete;
Ctrl-C stops and removes the partial file (exit 130). Quantize the result with `workbench quantize`.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from app.cli import ProgressLine, run_cancellable

EXIT_INTERRUPTED = 130
TYPES = ("f32", "f16", "bf16", "q8_0")


def add_convert_parser(subparsers) -> None:
    """Declare `workbench convert`."""
    p = subparsers.add_parser(
        "convert", help="convert a Hugging Face checkpoint folder to GGUF (F32, F16, BF16 or Q8_0)",
        description="Convert a Hugging Face checkpoint (config.json, safetensors or pytorch_model.bin weights, "
                    "tokenizer) to one GGUF file that llama.cpp and this app run. Architectures: Llama "
                    "(Llama 2/3, SmolLM, TinyLlama, Mistral), Qwen2/Qwen2.5, Qwen3, Phi-3. Make smaller "
                    "files from the result with `workbench quantize`.")
    p.add_argument("folder", metavar="HF_DIR", help="the checkpoint folder (it holds config.json)")
    p.add_argument("--out", metavar="FILE.gguf", default=None,
                   help="the output file, or a folder for <name>-<TYPE>.gguf (default: beside HF_DIR)")
    p.add_argument("--type", dest="out_type", choices=TYPES, default="f16", type=str.lower,
                   help="the output's number type (default: f16)")
    p.add_argument("--overwrite", action="store_true", help="replace the output if it already exists")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: path, type, bytes, seconds and what was converted")
    p.set_defaults(func=cmd_convert)


def _tensor_progress():
    """The progress text of a conversion: percent, tensor N of M, what it writes, tensors per second."""
    from runtime.jobs import RateMeter

    meter = RateMeter()

    def describe(done, total, message) -> str:
        if not total:
            return message
        meter.update(done, total)
        text = f"{100 * done / total:5.1f}%  tensor {int(done)}/{int(total)}  {message}"
        if meter.rate is not None and done < total:
            text += f"  ({meter.text(lambda v: f'{v:.1f} tensors')})"
        return text

    return describe


def cmd_convert(args) -> int:
    from runtime.compress.convert import default_out_name, plan_conversion
    from runtime.errors import ConversionError
    from runtime.models.gguf_info import format_size, param_label
    from runtime.models.library import readable

    folder = Path(args.folder).expanduser()
    plan = plan_conversion(folder, args.out_type)
    out = Path(args.out).expanduser() if args.out else folder.absolute().parent
    if out.is_dir():
        out = out / default_out_name(folder, plan.out_type)
    if out.exists() and not args.overwrite:
        raise ConversionError(f"{out} already exists", path=out,
                              hint="Add --overwrite to replace it, or choose another --out.")
    info = plan.info
    print(f"{readable(info.name)}: {info.hf_architecture} -> GGUF {plan.gguf_arch}, "
          f"{param_label(info.parameter_count)} parameters, {info.dtype}, {format_size(info.size_bytes)} "
          f"in {len(info.weight_files)} file(s)", file=sys.stderr)
    print(f"  {plan.out_type.upper()}: about {format_size(plan.expected_bytes)} -> {readable(str(out))}",
          file=sys.stderr)
    return _run(args, folder, out, plan)


def _run(args, folder: Path, out: Path, plan) -> int:
    from runtime.compress.convert import convert_checkpoint
    from runtime.errors import Cancelled
    from runtime.jobs import CancelToken
    from runtime.models.gguf_info import format_size
    from runtime.models.library import readable

    line = ProgressLine(_tensor_progress())
    cancel = CancelToken()
    started = time.monotonic()
    # Ctrl-C becomes a cancel: the converter removes its partial file before we exit.
    path, error = run_cancellable(
        lambda: convert_checkpoint(folder, out, out_type=plan.out_type, progress=line.show, cancel=cancel),
        cancel, "convert")
    line.end()
    if isinstance(error, Cancelled) or (cancel.cancelled and error is None and path is None):
        print("interrupted: the unfinished output was removed.", file=sys.stderr)
        return EXIT_INTERRUPTED
    if error is not None:
        raise error
    seconds = time.monotonic() - started
    size = path.stat().st_size
    print(f"{plan.out_type.upper()}: {format_size(size)} in {seconds:.1f} s -> {readable(str(path))}", file=sys.stderr)
    if args.json:
        info = plan.info
        print(json.dumps({"path": readable(str(path)), "type": plan.out_type.upper(), "bytes": size,
                          "seconds": round(seconds, 3), "source": readable(info.path),
                          "hf_architecture": info.hf_architecture, "architecture": plan.gguf_arch,
                          "parameter_count": info.parameter_count, "source_dtype": info.dtype,
                          "tensor_count": len(plan.tensors), "tokenizer": plan.vocab.model,
                          "has_chat_template": plan.vocab.special.chat_template is not None}, indent=2))
    else:
        print(readable(str(path)))
    return 0


