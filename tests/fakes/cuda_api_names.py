"""The names cuda-python's ``cuda.bindings.runtime`` really defines, for cuda-bindings 12.9 and 13.x.

The wheels (~10 MB each, plus ``cuda-pathfinder`` that 13.x imports) are downloaded once into
``~/.cache/eeg2img-deploy/cuda-wheels`` and unpacked there. 13.x compresses its module strings, so the
names are read by importing the module in a subprocess (no GPU or driver is needed to import it) and
listing its attributes, and the members of its enums (``cudaError_t``, ``cudaMemcpyKind``, ...).
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path

CACHE_DIR = Path.home() / ".cache" / "eeg2img-deploy" / "cuda-wheels"
# requirement(s), platform tag: 12.x is JetPack 6's and the tensorrt-cu12 extra's, 13.x the tensorrt-cu13 extra's
WHEELS = {
    "12.9": (["cuda-bindings==12.9.*"], "manylinux_2_17_x86_64"),
    "13": (["cuda-bindings==13.*", "cuda-pathfinder"], "manylinux_2_28_x86_64"),
}
_LIST = """
import json, sys
sys.path.insert(0, sys.argv[1])
from cuda.bindings import runtime as rt
names = set(dir(rt))
for n in list(names):
    v = getattr(rt, n)
    if isinstance(v, type) and hasattr(v, "__members__"):  # an Enum (13.x: its own FastEnum)
        names.update(f"{n}.{m}" for m in v.__members__)
print(json.dumps(sorted(names)))
"""


def _unpacked(version: str) -> Path | None:
    folder = CACHE_DIR / version
    if (folder / "cuda" / "bindings").is_dir():
        return folder
    requirements, platform = WHEELS[version]
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(folder), "--only-binary=:all:",
           "--python-version", f"{sys.version_info.major}.{sys.version_info.minor}", "--platform", platform, *requirements]  # fmt: skip
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    except (subprocess.SubprocessError, OSError):
        return None
    return folder if (folder / "cuda" / "bindings").is_dir() else None


@cache
def runtime_names(version: str) -> frozenset[str] | None:
    """Every attribute of ``cuda.bindings.runtime`` (and ``Enum.member``) in ``version``; None when offline."""
    folder = _unpacked(version)
    if folder is None:
        return None
    out = subprocess.run([sys.executable, "-c", _LIST, str(folder)], check=True, capture_output=True, text=True, timeout=120)
    return frozenset(json.loads(out.stdout))
