"""Copies of the real starter model with one thing changed: its chat template, or NaN weights."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_starter_variant(starter: Path, folder: Path, name: str, chat_template: str | None = None,
                          nan_tensor: str | None = None) -> Path:
    """The starter GGUF with ``chat_template`` instead of its own and/or tensor ``nan_tensor`` (an F32
    one, such as "output_norm.weight") filled with NaN. Everything else is copied unchanged."""
    import gguf

    reader = gguf.GGUFReader(starter)
    arch = reader.fields["general.architecture"].contents()
    path = Path(folder) / name
    writer = gguf.GGUFWriter(path, arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        if key == gguf.Keys.Tokenizer.CHAT_TEMPLATE and chat_template is not None:
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), value_type, sub_type=sub_type)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    for tensor in reader.tensors:
        data = np.array(tensor.data)
        if tensor.name == nan_tensor:
            data = np.full_like(data, np.nan)
        writer.add_tensor(tensor.name, data, raw_shape=tensor.data.shape, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
