"""Fakes for CPU tests: a small ``tensorrt`` and cuda-python's ``cuda.bindings.runtime``.

:func:`install_fake_gpu` puts both into ``sys.modules`` (through pytest's monkeypatch, so they vanish
after the test) and returns the state that records every call and every broken API precondition.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .fake_cudart import GpuState, make_fake_cudart, native
from .fake_tensorrt import TrtState, make_fake_tensorrt

__all__ = ["GpuState", "TrtState", "install_fake_gpu", "remove_tensorrt"]


def install_fake_gpu(
    monkeypatch: Any,
    *,
    version: str = "10.3.0",
    compute_capability: tuple[int, int] = (8, 9),
    device_count: int = 1,
    name: str = "NVIDIA Fake GPU",
    free_bytes: int = 20 << 30,
    driver_too_old: bool = False,
    no_driver: bool = False,
    tensorrt: bool = True,
) -> TrtState:
    """``tensorrt=False``: only the CUDA bindings (onnxruntime-CUDA machines without TensorRT)."""
    state = TrtState(version=version, gpu=GpuState(device_count=device_count, name=name, driver_too_old=driver_too_old, no_driver=no_driver,
                                                   compute_capability=compute_capability, free_bytes=free_bytes))  # fmt: skip
    cudart = make_fake_cudart(state.gpu)
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    utils = types.ModuleType("cuda.bindings.utils")
    utils.get_cuda_native_handle = native
    bindings.runtime, bindings.utils = cudart, utils
    cuda.bindings = bindings
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt(state) if tensorrt else None)
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
    monkeypatch.setitem(sys.modules, "cuda.bindings.utils", utils)
    return state


def remove_tensorrt(monkeypatch: Any) -> None:
    """Make ``import tensorrt`` fail, as on a machine without it (None in sys.modules -> ImportError)."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)
