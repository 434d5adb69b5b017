"""A small fake of cuda-python's ``cuda.bindings.runtime`` (cudart) that behaves like a GPU where it matters.

"Device" memory is host memory (numpy buffers) at real addresses, so the code under test passes real
pointers around and the fake TensorRT engine reads and writes them. What the fake models:

* **Asynchronous streams.** Copies, kernels and graph launches are queued on their stream and run at
  ``cudaStreamSynchronize``: a download into pinned memory is not there before the sync.
* **Pageable vs pinned host memory.** ``cudaMallocHost`` memory is pinned; a copy from/to any other
  host memory is *pageable*: the driver stages it synchronously (a download first drains the stream),
  and it cannot be captured into a graph. ``state.copies`` records every copy with its direction.
* **Stream capture.** Work issued while capturing is recorded, not run. ``state.fail_captures`` makes
  ``cudaStreamEndCapture`` report an invalidated capture (the recorded work is then lost, as on a real
  GPU); allocating or synchronizing during a capture is an error that invalidates it.
* **The legacy default stream.** Stream handle 0 is the legacy stream: its work runs at once, after the
  work of every *blocking* stream (``cudaStreamCreate``); ``cudaStreamCreateWithFlags(cudaStreamNonBlocking)``
  streams do not synchronize with it. Legacy-stream work while a blocking stream captures is
  ``cudaErrorStreamCaptureImplicit`` and invalidates that capture. ``state.on_capture`` (a test's hook)
  runs right after a capture begins: "another library" using the legacy stream meanwhile.
* **Graphs.** A graph exec replays exactly the recorded operations; the fake TensorRT adds a check
  that the execution context still has the shapes the graph was captured with.
* **The last error.** Every call that fails also records its error as the thread's last error, which
  stays until ``cudaGetLastError`` reads it (``cudaPeekAtLastError`` leaves it); the fake TensorRT's
  enqueue fails while one is pending, as TensorRT's launch checks see it (trtexec clears it after a
  failed capture for that reason).
* **No driver vs an old one.** Both make ``cudaGetDeviceCount`` return ``cudaErrorInsufficientDriver``
  (as the real runtime does); ``cudaDriverGetVersion`` gives 0 without a driver.

Every broken rule returns the CUDA error code AND is recorded in ``state.violations``, so a test fails
even if the code under test ignored the error.
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
    cudaErrorInvalidDevicePointer = 17
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorStreamCaptureUnsupported = 900
    cudaErrorStreamCaptureInvalidated = 901
    cudaErrorStreamCaptureImplicit = 906


cudaStreamDefault, cudaStreamNonBlocking = 0, 1  # module-level ints in cuda.bindings.runtime (12.x and 13.x)


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


OK = cudaError_t.cudaSuccess


@dataclass
class Op:
    """One unit of queued GPU work. ``check`` runs when a graph holding it is launched."""

    what: str
    run: Callable[[], None]
    check: Callable[[], str | None] | None = None


@dataclass
class Copy:
    kind: str  # "H2D" | "D2H" | "D2D"
    nbytes: int
    pinned: bool  # the host side is page-locked (always True for D2D)


@dataclass
class GpuState:
    """What the fake machine has, and everything the code under test did to it."""

    device_count: int = 1
    name: str = "NVIDIA Fake GPU"
    compute_capability: tuple[int, int] = (8, 9)
    total_bytes: int = 24 << 30
    free_bytes: int = 20 << 30
    no_driver: bool = False
    driver_too_old: bool = False
    runtime_version: int = 13000  # cudaRuntimeGetVersion: 1000 * major + 10 * minor
    last_error: int = 0  # the thread's last error (cudaGetLastError)
    fail_captures: bool = False
    on_capture: Callable[[], None] | None = None  # run right after cudaStreamBeginCapture (a test's hook)
    calls: list[tuple[str, tuple]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    allocations: dict[int, np.ndarray] = field(default_factory=dict)  # device memory
    pinned: dict[int, np.ndarray] = field(default_factory=dict)  # cudaMallocHost memory
    streams: dict[int, Stream] = field(default_factory=dict)
    graph_execs: dict[int, list[Op]] = field(default_factory=dict)
    copies: list[Copy] = field(default_factory=list)
    kernel_launches: int = 0

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def violate(self, msg: str) -> None:
        self.violations.append(msg)

    def count(self, kind: str) -> int:
        return sum(c.kind == kind for c in self.copies)

    def capturing(self) -> bool:
        return any(s.capture is not None for s in self.streams.values())

    @staticmethod
    def _inside(table: dict[int, np.ndarray], ptr: int, nbytes: int) -> bool:
        return any(base <= ptr and ptr + nbytes <= base + buf.nbytes for base, buf in table.items())

    def is_device(self, ptr: int, nbytes: int) -> bool:
        return self._inside(self.allocations, ptr, nbytes)

    def is_pinned(self, ptr: int, nbytes: int) -> bool:
        return self._inside(self.pinned, ptr, nbytes)


class Handle:
    """Like cuda-python's opaque handles (cudaStream_t, cudaGraph_t): the address via ``getPtr()`` or
    ``cuda.bindings.utils.get_cuda_native_handle``; ``int(handle)`` is deprecated (cuda-bindings 12.9.1+)."""

    _next = 0x1000

    def __init__(self, kind: str, state: GpuState | None = None) -> None:
        Handle._next += 0x10
        self._value, self._kind, self._state = Handle._next, kind, state

    def __int__(self) -> int:
        if self._state is not None:
            self._state.violate(f"int() on a {self._kind}: deprecated in cuda-bindings 13 (use get_cuda_native_handle)")
        return self._value

    def getPtr(self) -> int:
        return self._value

    def __repr__(self) -> str:
        return f"<fake {self._kind} 0x{self._value:x}>"


def native(obj: Any) -> int:
    """The fake's ``cuda.bindings.utils.get_cuda_native_handle``."""
    return obj if isinstance(obj, int) else obj.getPtr()


class Stream:
    """A queue of work that runs at synchronize; or, while capturing, a recorder of it."""

    def __init__(self, state: GpuState, blocking: bool = True) -> None:
        self.state = state
        self.blocking = blocking  # synchronizes with the legacy default stream (cudaStreamCreate's streams)
        self.handle = Handle("cudaStream_t", state)
        self.queue: list[Op] = []
        self.capture: list[Op] | None = None
        self.capture_broken: str | None = None

    def enqueue(self, op: Op) -> None:
        (self.capture if self.capture is not None else self.queue).append(op)

    def drain(self) -> None:
        queue, self.queue = self.queue, []
        for op in queue:
            op.run()

    def invalidate(self, why: str) -> None:
        self.state.violate(why)
        self.capture_broken = why


@dataclass
class _Props:
    name: bytes
    major: int
    minor: int
    totalGlobalMem: int


class CudaRuntime:
    """The functions of ``cuda.bindings.runtime`` the toolkit uses; each returns ``(err, *values)``."""

    def __init__(self, state: GpuState) -> None:
        self.state = state

    def _record(self, name: str, *args: Any) -> None:
        self.state.calls.append((name, args))

    def _stream(self, stream: Any, what: str) -> Stream | None:
        s = self.state.streams.get(native(stream))
        if s is None:
            self.state.violate(f"{what} on a stream that does not exist")
        return s

    def _no_device(self, what: str) -> cudaError_t | None:
        if self.state.no_driver or self.state.driver_too_old or self.state.device_count == 0:
            self.state.violate(f"{what} called on a machine without a usable CUDA device")
            return cudaError_t.cudaErrorNoDevice
        return None

    def _during_capture(self, what: str) -> cudaError_t | None:
        for s in self.state.streams.values():
            if s.capture is not None:
                s.invalidate(f"{what} during stream capture (not capturable; it invalidates the capture)")
                return cudaError_t.cudaErrorStreamCaptureUnsupported
        return None

    # ---- device -------------------------------------------------------------------------------------
    def cudaGetErrorString(self, err: Any) -> tuple:
        return (OK, cudaError_t(int(err)).name.encode())

    def cudaGetDeviceCount(self) -> tuple:
        self._record("cudaGetDeviceCount")
        if self.state.driver_too_old or self.state.no_driver:  # the real runtime says this for both
            return (cudaError_t.cudaErrorInsufficientDriver, None)
        if self.state.device_count == 0:
            return (cudaError_t.cudaErrorNoDevice, None)
        return (OK, self.state.device_count)

    def cudaDriverGetVersion(self) -> tuple:
        self._record("cudaDriverGetVersion")
        if self.state.no_driver:
            return (OK, 0)  # documented: 0 when no driver is installed
        return (OK, 12020 if self.state.driver_too_old else self.state.runtime_version)

    def cudaRuntimeGetVersion(self) -> tuple:
        return (OK, self.state.runtime_version)

    def cudaGetLastError(self) -> tuple:
        self._record("cudaGetLastError")
        err, self.state.last_error = self.state.last_error, 0
        return (cudaError_t(err),)

    def cudaPeekAtLastError(self) -> tuple:
        return (cudaError_t(self.state.last_error),)

    def cudaGetDeviceProperties(self, device: int) -> tuple:
        self._record("cudaGetDeviceProperties", device)
        if (err := self._no_device("cudaGetDeviceProperties")) is not None:
            return (err, None)
        major, minor = self.state.compute_capability
        return (OK, _Props(self.state.name.encode(), major, minor, self.state.total_bytes))

    def cudaMemGetInfo(self) -> tuple:
        self._record("cudaMemGetInfo")
        if (err := self._no_device("cudaMemGetInfo")) is not None:
            return (err, 0, 0)
        return (OK, self.state.free_bytes, self.state.total_bytes)

    # ---- memory -------------------------------------------------------------------------------------
    def _alloc(self, name: str, table: dict[int, np.ndarray], nbytes: int) -> tuple:
        self._record(name, nbytes)
        if (err := self._no_device(name)) is not None:
            return (err, 0)
        if (err := self._during_capture(name)) is not None:
            return (err, 0)
        raw = np.zeros(max(int(nbytes), 1) + 256, dtype=np.uint8)
        buf = raw[-raw.ctypes.data % 256 :][: max(int(nbytes), 1)]  # 256-byte aligned, as cudaMalloc's memory is
        table[buf.ctypes.data] = buf
        return (OK, buf.ctypes.data)

    def _free(self, name: str, table: dict[int, np.ndarray], ptr: Any) -> tuple:
        self._record(name, ptr)
        if (err := self._during_capture(name)) is not None:
            return (err,)
        if table.pop(native(ptr), None) is None:
            self.state.violate(f"{name} of {native(ptr):#x}, which is not such an allocation (double free?)")
            return (cudaError_t.cudaErrorInvalidDevicePointer,)
        return (OK,)

    def cudaMalloc(self, nbytes: int) -> tuple:
        return self._alloc("cudaMalloc", self.state.allocations, nbytes)

    def cudaFree(self, ptr: Any) -> tuple:
        return self._free("cudaFree", self.state.allocations, ptr)

    def cudaMallocHost(self, nbytes: int) -> tuple:
        return self._alloc("cudaMallocHost", self.state.pinned, nbytes)

    def cudaFreeHost(self, ptr: Any) -> tuple:
        return self._free("cudaFreeHost", self.state.pinned, ptr)

    def _legacy_copy(self, dst: int, src: int, count: int) -> tuple:
        """A copy on the legacy default stream: it waits for every blocking stream, then runs."""
        for other in self.state.streams.values():
            if other.blocking and other.capture is not None:
                other.invalidate("legacy-stream work while a blocking stream captures (cudaErrorStreamCaptureImplicit)")
                return (cudaError_t.cudaErrorStreamCaptureImplicit,)
        for other in self.state.streams.values():
            if other.blocking:
                other.drain()
        ctypes.memmove(dst, src, count)
        return (OK,)

    def cudaMemcpyAsync(self, dst: Any, src: Any, count: int, kind: Any, stream: Any) -> tuple:
        self._record("cudaMemcpyAsync", dst, src, count, kind)
        dst, src, count, kind = native(dst), native(src), int(count), cudaMemcpyKind(int(kind))
        if native(stream) == 0:
            return self._legacy_copy(dst, src, count)
        s = self._stream(stream, "cudaMemcpyAsync")
        if s is None:
            return (cudaError_t.cudaErrorInvalidValue,)
        st = self.state
        to_dev = kind in (cudaMemcpyKind.cudaMemcpyHostToDevice, cudaMemcpyKind.cudaMemcpyDeviceToDevice)
        from_dev = kind in (cudaMemcpyKind.cudaMemcpyDeviceToHost, cudaMemcpyKind.cudaMemcpyDeviceToDevice)
        if (to_dev and not st.is_device(dst, count)) or (from_dev and not st.is_device(src, count)):
            st.violate(f"cudaMemcpyAsync: {count} bytes {kind.name} outside any device allocation")
            return (cudaError_t.cudaErrorInvalidValue,)
        if kind not in (cudaMemcpyKind.cudaMemcpyHostToDevice, cudaMemcpyKind.cudaMemcpyDeviceToHost,
                        cudaMemcpyKind.cudaMemcpyDeviceToDevice):  # fmt: skip
            st.violate(f"cudaMemcpyAsync with {kind.name}: say the direction")
            return (cudaError_t.cudaErrorInvalidValue,)
        host = src if kind == cudaMemcpyKind.cudaMemcpyHostToDevice else dst
        pinned = kind == cudaMemcpyKind.cudaMemcpyDeviceToDevice or st.is_pinned(host, count)
        label = {1: "H2D", 2: "D2H", 3: "D2D"}[int(kind)]
        if not pinned and s.capture is not None:
            s.invalidate(f"cudaMemcpyAsync {label} with pageable host memory during stream capture")
            return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
        st.copies.append(Copy(label, count, pinned))
        if pinned:
            s.enqueue(Op(f"memcpy {label}", lambda: ctypes.memmove(dst, src, count)))
        elif label == "H2D":  # staged now: the caller may reuse its array at once, the device sees it later
            staged = np.frombuffer((ctypes.c_char * count).from_address(src), np.uint8).copy()
            s.enqueue(Op("memcpy H2D (staged)", lambda: ctypes.memmove(dst, staged.ctypes.data, count)))
        else:  # pageable download: the driver waits for the stream, then copies (synchronous)
            s.drain()
            ctypes.memmove(dst, src, count)
        return (OK,)

    # ---- streams, capture, graphs -------------------------------------------------------------------
    def cudaStreamCreate(self) -> tuple:
        return self._create_stream("cudaStreamCreate", blocking=True)

    def cudaStreamCreateWithFlags(self, flags: int) -> tuple:
        if int(flags) not in (cudaStreamDefault, cudaStreamNonBlocking):
            self.state.violate(f"cudaStreamCreateWithFlags({flags!r}): not a stream flag")
            return (cudaError_t.cudaErrorInvalidValue, None)
        return self._create_stream("cudaStreamCreateWithFlags", blocking=int(flags) == cudaStreamDefault)

    def _create_stream(self, name: str, blocking: bool) -> tuple:
        self._record(name)
        if (err := self._no_device(name)) is not None:
            return (err, None)
        s = Stream(self.state, blocking)
        self.state.streams[native(s.handle)] = s
        return (OK, s.handle)

    def cudaStreamDestroy(self, stream: Any) -> tuple:
        self._record("cudaStreamDestroy")
        s = self.state.streams.pop(native(stream), None)
        if s is None:
            self.state.violate("cudaStreamDestroy of an unknown stream")
            return (cudaError_t.cudaErrorInvalidValue,)
        s.drain()
        return (OK,)

    def cudaStreamSynchronize(self, stream: Any) -> tuple:
        self._record("cudaStreamSynchronize")
        s = self._stream(stream, "cudaStreamSynchronize")
        if s is None:
            return (cudaError_t.cudaErrorInvalidValue,)
        if s.capture is not None:
            s.invalidate("cudaStreamSynchronize during stream capture")
            return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
        s.drain()
        return (OK,)

    def cudaStreamBeginCapture(self, stream: Any, mode: Any) -> tuple:
        self._record("cudaStreamBeginCapture")
        s = self._stream(stream, "cudaStreamBeginCapture")
        if s is None or s.capture is not None:
            self.state.violate("cudaStreamBeginCapture on a missing stream or one already capturing")
            return (cudaError_t.cudaErrorStreamCaptureInvalidated,)
        s.capture, s.capture_broken = [], None
        if self.state.on_capture is not None:
            self.state.on_capture()
        return (OK,)

    def cudaStreamEndCapture(self, stream: Any) -> tuple:
        self._record("cudaStreamEndCapture")
        s = self._stream(stream, "cudaStreamEndCapture")
        if s is None or s.capture is None:
            self.state.violate("cudaStreamEndCapture without BeginCapture")
            return (cudaError_t.cudaErrorInvalidValue, None)
        ops, s.capture = s.capture, None
        if self.state.fail_captures or s.capture_broken:  # the recorded work is gone; nothing ran
            return (cudaError_t.cudaErrorStreamCaptureInvalidated, None)
        g = Handle("cudaGraph_t", self.state)
        g.ops = ops  # type: ignore[attr-defined]
        return (OK, g)

    def cudaGraphInstantiate(self, graph: Any, flags: int) -> tuple:  # flags: required since cuda-python 12
        self._record("cudaGraphInstantiate")
        if not hasattr(graph, "ops"):
            self.state.violate("cudaGraphInstantiate of something that is not a graph")
            return (cudaError_t.cudaErrorInvalidValue, None)
        e = Handle("cudaGraphExec_t", self.state)
        self.state.graph_execs[native(e)] = list(graph.ops)
        return (OK, e)

    def cudaGraphLaunch(self, graph_exec: Any, stream: Any) -> tuple:
        self._record("cudaGraphLaunch")
        ops, s = self.state.graph_execs.get(native(graph_exec)), self._stream(stream, "cudaGraphLaunch")
        if ops is None or s is None:
            self.state.violate("cudaGraphLaunch of a destroyed or unknown graph (or on an unknown stream)")
            return (cudaError_t.cudaErrorInvalidValue,)
        for op in ops:
            problem = op.check() if op.check else None
            if problem:
                self.state.violate(f"cudaGraphLaunch: {problem}")
                return (cudaError_t.cudaErrorInvalidValue,)
        for op in ops:
            s.enqueue(op)
        return (OK,)

    def cudaGraphExecDestroy(self, graph_exec: Any) -> tuple:
        self._record("cudaGraphExecDestroy")
        if self.state.graph_execs.pop(native(graph_exec), None) is None:
            self.state.violate("cudaGraphExecDestroy of an unknown graph exec")
        return (OK,)

    def cudaGraphDestroy(self, graph: Any) -> tuple:
        self._record("cudaGraphDestroy")
        return (OK,)


_NO_LAST_ERROR = {"cudaGetLastError", "cudaPeekAtLastError", "cudaGetErrorString"}


def _records_last_error(state: GpuState, fn: Callable[..., tuple]) -> Callable[..., tuple]:
    def call(*args: Any) -> tuple:
        result = fn(*args)
        if result[0] != OK:
            state.last_error = int(result[0])
        return result

    call.__name__ = fn.__name__
    return call


def make_fake_cudart(state: GpuState) -> types.ModuleType:
    """A module object with the runtime functions bound to ``state`` (and the enums)."""
    m = types.ModuleType("cuda.bindings.runtime")
    rt = CudaRuntime(state)
    for name in dir(CudaRuntime):
        if name.startswith("cuda"):
            fn = getattr(rt, name)
            setattr(m, name, fn if name in _NO_LAST_ERROR else _records_last_error(state, fn))
    m.cudaError_t, m.cudaMemcpyKind, m.cudaStreamCaptureMode = cudaError_t, cudaMemcpyKind, cudaStreamCaptureMode
    m.cudaStreamDefault, m.cudaStreamNonBlocking = cudaStreamDefault, cudaStreamNonBlocking
    m._state = state
    return m
