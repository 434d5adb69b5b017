"""The extras resolve to what GPU machines can use, and the onnxruntime builds cannot collide."""

from __future__ import annotations

import tomllib
from pathlib import Path

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]


def _names(requirements: list[str]) -> set[str]:
    return {r.split(";")[0].split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip() for r in requirements}


def test_onnxruntime_and_onnxruntime_gpu_are_never_installed_together() -> None:
    """Both install the module `onnxruntime`; with both, the CUDA provider disappears (onnxruntime#26996)."""
    extras = PYPROJECT["optional-dependencies"]
    assert not _names(PYPROJECT["dependencies"]) & {"onnxruntime", "onnxruntime-gpu"}
    assert _names(extras["cpu"]) == {"onnxruntime"} and _names(extras["gpu"]) == {"onnxruntime-gpu"}
    others = {n for name, reqs in extras.items() if name not in ("cpu", "gpu") for n in _names(reqs)}
    assert not others & {"onnxruntime", "onnxruntime-gpu"}


def test_tensorrt_extras_pin_the_cuda_major_version() -> None:
    """`tensorrt>=10.3` resolved to the CUDA 13 build and `cuda-python>=12.4` to 13.x (no `cuda.cudart`)."""
    extras = PYPROJECT["optional-dependencies"]
    assert "tensorrt" not in extras
    for cuda, trt_package in (("12", "tensorrt-cu12"), ("13", "tensorrt-cu13")):
        reqs = extras[f"tensorrt-cu{cuda}"]
        trt = next(r for r in reqs if r.startswith(trt_package))
        assert "platform_machine == 'x86_64'" in trt, "TensorRT's pip wheels are x86_64 only (Jetson: apt)"
        bindings = next(r for r in reqs if r.startswith("cuda-python"))
        assert f"<{int(cuda) + 1}" in bindings and ";" not in bindings, "the bindings on every platform, Jetson too"
