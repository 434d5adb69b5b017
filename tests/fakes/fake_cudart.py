"""A small fake of cuda-python's ``cuda.bindings.runtime`` (cudart) for CPU tests.

"Device" memory is host memory (numpy buffers) at real addresses, so the code under test passes real
pointers around and the fake TensorRT engine can read and write them. The fake enforces what the real
runtime would reject: copies to or from pointers that were never allocated (or past their end), freeing
twice, synchronizing a stream while it is being captured, launching a graph that was destroyed.
Violations return the CUDA error code AND are recorded in ``state.violations`` so a test fails even if
the code under test ignored the error.
"""

from __future__ import annotations

import ctypes
import enum
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorInvalidDevicePointer = 17
    cudaErrorStreamCaptureUnsupported = 900
    cudaErrorStreamCaptureInvalidated = 901


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3
    cudaMemcpyDefault = 4


class cudaStreamCaptureMode(enum.IntEnum):
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1
    cudaStreamCaptureModeRelaxed = 2


@dataclass
class GpuState:
    """What the fake machine has, and everything the code under test did to it."""

    device_count: int = 1
    name: str = "NVIDIA Fake GPU"
    compute_capability: tuple[int, int] = (8, 9)
    total_bytes: int = 24 << 30
    free_bytes: int = 20 << 30
    no_driver: bool = False
    calls: list[tuple[str, tuple]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    allocations: dict[int, np.ndarray] = field(default_factory=dict)
    streams: dict[int, dict[str, Any]] = field(default_factory=dict)  # handle -> {"capturing": list | None}
    graphs: dict[int, list[Callable[[], None]]] = field(default_factory=dict)
    graph_execs: dict[int, list[Callable[[], None]]] = field(default_factory=dict)
    kernel_launches: int = 0

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def violate(self, msg: str) -> None:
        self.violations.append(msg)

    def find(self, ptr: int, nbytes: int) -> bool:
        for base, buf in self.allocations.items():
            if base <= ptr and ptr + nbytes <= base + buf.nbytes:
                return True
        return False

    def launch(self, stream: int, op: Callable[[], None]) -> None:
        """Run ``op`` on ``stream`` now, or record it when the stream is being captured."""
        capture = self.streams[stream]["capturing"]
        if capture is not None:
            capture.append(op)
        else:
            op()


class _Handle:
    """Like cuda-python's opaque handles (cudaStream_t, cudaGraph_t): ``int(handle)`` is the address."""

    _next = 0x1000

    def __init__(self, kind: str) -> None:
        _Handle._next += 0x10
        self._value, self._kind = _Handle._next, kind

    def __int__(self) -> int:
        return self._value

    def getPtr(self) -> int:
        return self._value

    def __repr__(self) -> str:
        return f"<fake {self._kind} 0x{self._value:x}>"


@dataclass
class _Props:
    name: bytes
    major: int
    minor: int
    totalGlobalMem: int


def make_fake_cudart(state: GpuState) -> types.ModuleType:
    m = types.ModuleType("cuda.bindings.runtime")
    ok = (cudaError_t.cudaSuccess,)
    m.cudaError_t, m.cudaMemcpyKind, m.cudaStreamCaptureMode = cudaError_t, cudaMemcpyKind, cudaStreamCaptureMode

    def record(name: str, *args: Any) -> None:
        state.calls.append((name, args))

    def cudaGetErrorString(err: Any) -> tuple:
        return (cudaError_t.cudaSuccess, cudaError_t(int(err)).name.encode())

    def cudaGetDeviceCount() -> tuple:
        record("cudaGetDeviceCount")
        if state.no_driver:
            return (cudaError_t.cudaErrorInsufficientDriver, 0)
        if state.device_count == 0:
            return (cudaError_t.cudaErrorNoDevice, 0)
        return (cudaError_t.cudaSuccess, state.device_count)

    def _need_device(name: str) -> cudaError_t | None:
        if state.no_driver or state.device_count == 0:
            state.violate(f"{name} called on a machine without a CUDA device")
            return cudaError_t.cudaErrorNoDevice
        return None

    def cudaGetDeviceProperties(device: int) -> tuple:
        record("cudaGetDeviceProperties", device)
        if (err := _need_device("cudaGetDeviceProperties")) is not None:
            return (err, None)
        major, minor = state.compute_capability
        return (cudaError_t.cudaSuccess, _Props(state.name.encode(), major, minor, state.total_bytes))

    def cudaMemGetInfo() -> tuple:
        record("cudaMemGetInfo")
        if (err := _need_device("cudaMemGetInfo")) is not None:
            return (err, 0, 0)
        return (cudaError_t.cudaSuccess, state.free_bytes, state.total_bytes)

    def cudaMalloc(nbytes: int) -> tuple:
        record("cudaMalloc", nbytes)
        if (err := _need_device("cudaMalloc")) is not None:
            return (err, 0)
        buf = np.zeros(max(int(nbytes), 1), dtype=np.uint8)
        state.allocations[buf.ctypes.data] = buf
        return (cudaError_t.cudaSuccess, buf.ctypes.data)

    def cudaFree(ptr: int) -> tuple:
        record("cudaFree", ptr)
        if state.allocations.pop(int(ptr), None) is None:
            state.violate(f"cudaFree of {ptr:#x}, which is not an allocation (double free?)")
            return (cudaError_t.cudaErrorInvalidDevicePointer,)
        return ok

    def _copy(name: str, dst: int, src: int, count: int, kind: cudaMemcpyKind) -> cudaError_t:
        dst, src = int(dst), int(src)
        dev_dst = kind in (cudaMemcpyKind.cudaMemcpyHostToDevice, cudaMemcpyKind.cudaMemcpyDeviceToDevice)
        dev_src = kind in (cudaMemcpyKind.cudaMemcpyDeviceToHost, cudaMemcpyKind.cudaMemcpyDeviceToDevice)
        if (dev_dst and not state.find(dst, count)) or (dev_src and not state.find(src, count)):
            state.violate(f"{name}: {count} bytes {kind.name} outside any device allocation")
            return cudaError_t.cudaErrorInvalidValue
        return cudaError_t.cudaSuccess

    def cudaMemcpyAsync(dst: int, src: int, count: int, kind: Any, stream: Any) -> tuple:
        record("cudaMemcpyAsync", dst, src, count, kind)
        kind = cudaMemcpyKind(int(kind))
        if int(stream) not in state.streams:
            state.violate("cudaMemcpyAsync on a stream that does not exist")
            return (cudaError_t.cudaErrorInvalidValue,)
        err = _copy("cudaMemcpyAsync", dst, src, count, kind)
        if err == cudaError_t.cudaSuccess:
            state.launch(int(stream), lambda: ctypes.memmove(int(dst), int(src), int(count)))
        return (err,)

    def cudaStreamCreate() -> tuple:
        record("cudaStreamCreate")
        if (err := _need_device("cudaStreamCreate")) is not None:
            return (err, None)
        h = _Handle("cudaStream_t")
        state.streams[int(h)] = {"capturing": None}
        return (cudaError_t.cudaSuccess, h)

    def cudaStreamDestroy(stream: Any) -> tuple:
        record("cudaStreamDestroy")
        if state.streams.pop(int(stream), None) is None:
            state.violate("cudaStreamDestroy of an unknown stream")
            return (cudaError_t.cudaErrorInvalidValue,)
        return ok

    def cudaStreamSynchronize(stream: Any) -> tuple:
        record("cudaStreamSynchronize")
        s = state.streams.get(int(stream))
        if s is None:
            state.violate("cudaStreamSynchronize of an unknown stream")
            return (cudaError_t.cudaErrorInvalidValue,)
        if s["capturing"] is not None:
            state.violate("cudaStreamSynchronize during stream capture (illegal; invalidates the capture)")
            return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
        return ok

    def cudaStreamBeginCapture(stream: Any, mode: Any) -> tuple:
        record("cudaStreamBeginCapture")
        s = state.streams[int(stream)]
        if s["capturing"] is not None:
            state.violate("cudaStreamBeginCapture on a stream already capturing")
            return (cudaError_t.cudaErrorStreamCaptureInvalidated,)
        s["capturing"] = []
        return ok

    def cudaStreamEndCapture(stream: Any) -> tuple:
        record("cudaStreamEndCapture")
        s = state.streams[int(stream)]
        if s["capturing"] is None:
            state.violate("cudaStreamEndCapture without BeginCapture")
            return (cudaError_t.cudaErrorInvalidValue, None)
        g = _Handle("cudaGraph_t")
        state.graphs[int(g)], s["capturing"] = s["capturing"], None
        return (cudaError_t.cudaSuccess, g)

    def cudaGraphInstantiate(graph: Any, flags: int = 0) -> tuple:
        record("cudaGraphInstantiate")
        if int(graph) not in state.graphs:
            state.violate("cudaGraphInstantiate of an unknown graph")
            return (cudaError_t.cudaErrorInvalidValue, None)
        e = _Handle("cudaGraphExec_t")
        state.graph_execs[int(e)] = list(state.graphs[int(graph)])
        return (cudaError_t.cudaSuccess, e)

    def cudaGraphLaunch(graph_exec: Any, stream: Any) -> tuple:
        record("cudaGraphLaunch")
        ops = state.graph_execs.get(int(graph_exec))
        if ops is None:
            state.violate("cudaGraphLaunch of a destroyed or unknown graph")
            return (cudaError_t.cudaErrorInvalidValue,)
        for op in ops:
            state.launch(int(stream), op)
        return ok

    def cudaGraphExecDestroy(graph_exec: Any) -> tuple:
        record("cudaGraphExecDestroy")
        state.graph_execs.pop(int(graph_exec), None)
        return ok

    def cudaGraphDestroy(graph: Any) -> tuple:
        record("cudaGraphDestroy")
        state.graphs.pop(int(graph), None)
        return ok

    for fn in (
        cudaGetErrorString, cudaGetDeviceCount, cudaGetDeviceProperties, cudaMemGetInfo, cudaMalloc, cudaFree,
        cudaMemcpyAsync, cudaStreamCreate, cudaStreamDestroy, cudaStreamSynchronize, cudaStreamBeginCapture,
        cudaStreamEndCapture, cudaGraphInstantiate, cudaGraphLaunch, cudaGraphExecDestroy, cudaGraphDestroy,
    ):  # fmt: skip
        setattr(m, fn.__name__, fn)
    m._state = state
    return m
