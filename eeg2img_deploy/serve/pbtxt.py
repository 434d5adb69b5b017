"""Triton ``config.pbtxt`` from plain Python values (protobuf text format, no protobuf needed to write it).

A dict is a message, a list a repeated field, :class:`Enum` an enum value (unquoted), a str a quoted
string; the key ``"#"`` is a comment (one ``# ...`` line per list item), which Triton's parser skips.
The tests parse every file with Triton's own ``ModelConfig`` message (shipped in tritonclient).
"""

from __future__ import annotations

import json

# numpy dtype name -> Triton's DataType
TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "int32": "TYPE_INT32",
                "uint8": "TYPE_UINT8", "bool": "TYPE_BOOL"}


class Enum(str):
    """An enum value: written without quotes."""


def render(message: dict, indent: int = 0) -> str:
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        for item in value if isinstance(value, list) else [value]:
            if key == "#":
                lines.append(f"{pad}# {item}")
            elif isinstance(item, dict):
                lines.append(f"{pad}{key} {{\n{render(item, indent + 1)}{pad}}}")
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    return "".join(line + "\n" for line in lines)


def _scalar(value) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def tensor(name: str, dtype: str, dims: tuple[int, ...], *, batched: bool, optional: bool = False) -> dict:
    """One input/output. A batched per-sample scalar is ``dims: [1]`` reshaped to ``[]`` for the model."""
    out: dict = {"name": name, "data_type": Enum(TRITON_TYPES[dtype])}
    if batched and not dims:
        out["dims"] = [1]
        out["reshape"] = {"shape": []}
    else:
        out["dims"] = list(dims)
    if optional:
        out["optional"] = True
    return out
