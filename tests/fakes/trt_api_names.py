"""The names the real TensorRT Python bindings define, read from their wheels without installing them.

The bindings wheels (``tensorrt-cu12-bindings`` 10.3, ``tensorrt-cu13-bindings`` 11.4, ~1 MB each) are
downloaded once into ``~/.cache/eeg2img-deploy/trt-wheels``. Names come from the compiled module's
null-terminated strings (pybind11 registers every class, method, property and enum member by its name)
plus the code identifiers (not comments or strings) of the wheel's Python files (``nptype``, ``__version__``, ...). Only strings that
are whole identifiers count, so a name mentioned in a docstring (``BuilderFlag.FP16`` in 11.x) does
not. Short names may be merged by the linker into the tail of a longer string ("Logger" inside
"ILogger"), so a name also counts when it ends an identifier string.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tokenize
import zipfile
from functools import cache
from pathlib import Path

CACHE_DIR = Path.home() / ".cache" / "eeg2img-deploy" / "trt-wheels"
# requirement, platform tag of the wheels on PyPI (10.3 ships manylinux_2_17, 11.x manylinux_2_28)
WHEELS = {
    "10.3": ("tensorrt-cu12-bindings==10.3.0", "manylinux_2_17_x86_64", "tensorrt_cu12_bindings-10.3.0-*.whl"),
    "11.4": ("tensorrt-cu13-bindings==11.4.*", "manylinux_2_28_x86_64", "tensorrt_cu13_bindings-11.4.*.whl"),
}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def wheel(version: str) -> Path | None:
    """The cached wheel for ``version`` ("10.3" or "11.4"), downloading it if needed; None when offline."""
    requirement, platform, pattern = WHEELS[version]
    found = sorted(CACHE_DIR.glob(pattern))
    if found:
        return found[-1]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", requirement, "--python-version", "3.11",
           "--only-binary=:all:", "--platform", platform, "-d", str(CACHE_DIR), "--quiet"]  # fmt: skip
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=180)
    except (subprocess.SubprocessError, OSError):
        return None
    found = sorted(CACHE_DIR.glob(pattern))
    return found[-1] if found else None


@cache
def identifiers(wheel_path: Path) -> frozenset[str]:
    names: set[str] = set()
    with zipfile.ZipFile(wheel_path) as zf:
        for info in zf.infolist():
            if info.filename.endswith(".so"):
                data = zf.read(info)
                for s in re.findall(rb"[\x20-\x7e]{2,}", data):
                    text = s.decode("ascii")
                    if _IDENT.fullmatch(text):
                        names.add(text)
            elif info.filename.endswith(".py"):  # code identifiers only: not comments or strings
                source = zf.read(info).decode("utf-8", errors="replace")
                tokens = tokenize.generate_tokens(io.StringIO(source).readline)
                names.update(t.string for t in tokens if t.type == tokenize.NAME)
    return frozenset(names)


def has_name(name: str, names: frozenset[str]) -> bool:
    return name in names or any(n.endswith(name) for n in names)
