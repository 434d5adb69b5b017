"""Fakes for CPU tests: a small ``tensorrt`` and cuda-python's ``cuda.bindings.runtime``.

:func:`install_fake_gpu` puts both into ``sys.modules`` (through pytest's monkeypatch, so they vanish
after the test) and returns the state that records every call and every broken API precondition.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .fake_cudart import GpuState, make_fake_cudart
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
) -> TrtState:
    state = TrtState(version=version, gpu=GpuState(device_count=device_count, name=name,
                                                   compute_capability=compute_capability, free_bytes=free_bytes))  # fmt: skip
    cudart = make_fake_cudart(state.gpu)
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    cuda.bindings = bindings
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt(state))
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
    return state


def remove_tensorrt(monkeypatch: Any) -> None:
    """Make ``import tensorrt`` fail, as on a machine without it (None in sys.modules -> ImportError)."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)
