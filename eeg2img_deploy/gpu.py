"""Low-level GPU access shared by the engine builder and the TensorRT runtime (no torch, no onnx).

Importing TensorRT and the CUDA runtime bindings with the install hint in the error, checking
cuda-python's ``(err, *values)`` results, the device (with "driver too old" told apart from "no GPU"),
the TensorRT logger, raw handles, and the two kinds of memory the runtime uses: device buffers and
page-locked (pinned) host buffers.

CUDA binding: cuda-python (``cuda.bindings.runtime``; ``from cuda import cudart`` before cuda-python
12.6, removed in 13). It is NVIDIA's own thin 1:1 binding of the CUDA runtime API, the one TensorRT's
samples use, and it exposes stream capture and CUDA graphs directly.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import BackendUnavailableError, EngineError

log = logging.getLogger(__name__)

# Every TensorRT name this module uses (checked against the real bindings by
# tests/engines/test_tensorrt_api_names.py, for TensorRT 10.3 and 11.x).
TRT_API_USED = (
    "ILogger",
    "ILogger.__init__",
    "ILogger.log",
    "ILogger.Severity",
    "Severity.INTERNAL_ERROR",
    "Severity.ERROR",
    "Severity.WARNING",
    "Severity.INFO",
)

PIP_HINT = "pip install 'eeg2img-deploy[tensorrt-cu12]' (CUDA 12 driver) or '[tensorrt-cu13]' (CUDA 13, driver R580+)"
JETSON_HINT = ("on a Jetson use JetPack's TensorRT (apt: python3-libnvinfer) and `pip install "
               "'eeg2img-deploy[jetson6]'` (JetPack 6) or '[jetson7]' (JetPack 7)")


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendUnavailableError(
            f"TensorRT is not installed ({e}): on a machine with an NVIDIA GPU run `{PIP_HINT}` ({JETSON_HINT}), "
            "or use --backend onnxruntime"
        ) from e
    return trt


def import_cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6 (the only name in 13.x)
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except ImportError as e:
            raise BackendUnavailableError(
                f"the CUDA Python bindings are not installed ({e}): run `{PIP_HINT}` (it installs cuda-python)"
            ) from e
    return cudart


def handle(obj: Any) -> int:
    """The address behind a cuda-python object (stream, graph, pointer) as an int.

    ``int(obj)`` is deprecated since cuda-bindings 12.9.1/13.0 in favour of
    ``cuda.bindings.utils.get_cuda_native_handle``; plain ints (device pointers) pass through.
    """
    if isinstance(obj, int):
        return obj
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:  # cuda-bindings < 12.9.1 (JetPack 6 ships 12.x)
        return int(obj)
    return int(get_cuda_native_handle(obj))


def error_text(cudart: Any, err: Any) -> str:
    _, text = cudart.cudaGetErrorString(err)
    return text.decode() if isinstance(text, bytes) else str(text)


def cuda_call(cudart: Any, result: Any, what: str) -> Any:
    """cuda-python returns ``(err, *values)``; raise on an error, return the value(s)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        raise EngineError(f"CUDA call {what} failed: {error_text(cudart, err)} ({err!r})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def _cuda_version(v: int) -> str:
    """cudaDriverGetVersion/cudaRuntimeGetVersion's 1000 * major + 10 * minor as "12.2"."""
    return f"{v // 1000}.{v % 1000 // 10}"


@dataclass(frozen=True)
class CudaDevice:
    index: int
    name: str
    compute_capability: str  # "8.7"
    total_bytes: int
    free_bytes: int


def cuda_device(cudart: Any | None = None, index: int = 0) -> CudaDevice:
    """The CUDA device, or a clear error when there is none (checked before any TensorRT object)."""
    cudart = cudart or import_cudart()
    err, count = cudart.cudaGetDeviceCount()
    # cudaErrorInsufficientDriver means "driver too old" AND "no driver at all" (a machine without an NVIDIA
    # driver, a container started without GPUs); cudaDriverGetVersion tells them apart (0: no driver).
    driver = cudart.cudaDriverGetVersion()[1] if err == cudart.cudaError_t.cudaErrorInsufficientDriver else None
    if driver:
        runtime = cudart.cudaRuntimeGetVersion()[1]
        raise BackendUnavailableError(
            f"the NVIDIA driver is too old for these CUDA bindings (it supports CUDA {_cuda_version(driver)}, they "
            f"need CUDA {_cuda_version(runtime)}): install the CUDA-12 variant (`pip install "
            "'eeg2img-deploy[tensorrt-cu12]'`, drivers R525+) or update the driver (CUDA 13 needs R580+); "
            "`nvidia-smi` shows the driver's CUDA version"
        )
    failed = err != cudart.cudaError_t.cudaSuccess
    if failed or count == 0:
        why = "no NVIDIA driver is installed" if driver == 0 else error_text(cudart, err) if failed else "0 devices"
        raise BackendUnavailableError(
            f"no CUDA GPU found (cudaGetDeviceCount: {why}): "
            "TensorRT engines need an NVIDIA GPU with its driver; use --backend onnxruntime on this machine"
        )
    props = cuda_call(cudart, cudart.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    free, total = cuda_call(cudart, cudart.cudaMemGetInfo(), "cudaMemGetInfo")
    return CudaDevice(index, name.rstrip("\x00"), f"{props.major}.{props.minor}", int(total), int(free))


_LOGGERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tensorrt module -> its one logger


def trt_logger(trt: Any) -> Any:
    """The process's one TensorRT logger (it forwards to :mod:`logging` and keeps the recent errors).

    TensorRT treats the logger as a singleton: every Builder, Runtime and parser of a process must get
    the same one (NvInferRuntime.h; the Python docs of 8.x: "multiple instances of IRuntime and/or
    IBuilder must all use the same logger"). Callers read their errors with ``mark()`` before a call and
    ``errors_since(mark)`` after it.
    """
    logger = _LOGGERS.get(trt)
    if logger is None:
        logger = _LOGGERS[trt] = _make_trt_logger(trt)
    return logger


def _make_trt_logger(trt: Any) -> Any:
    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self._lock = threading.Lock()  # TensorRT may log from its own threads
            self._errors: collections.deque[str] = collections.deque(maxlen=64)
            self._count = 0

        def log(self, severity: Any, msg: str) -> None:
            S = trt.ILogger.Severity
            if severity in (S.INTERNAL_ERROR, S.ERROR):
                with self._lock:
                    self._errors.append(msg)
                    self._count += 1
                log.error("TensorRT: %s", msg)
            elif severity == S.WARNING:
                log.warning("TensorRT: %s", msg)
            elif severity == S.INFO:
                log.debug("TensorRT: %s", msg)

        def mark(self) -> int:
            return self._count

        def errors_since(self, mark: int, last: int | None = None) -> list[str]:
            """The errors logged after ``mark`` (at most the ``last`` ones)."""
            with self._lock:
                new = list(self._errors)[-(self._count - mark):] if self._count > mark else []
            return new[-last:] if last else new

    return _Logger()


# ---- memory ----------------------------------------------------------------------------------------
class DeviceBuffer:
    """``nbytes`` of device memory (cudaMalloc), freed by :meth:`free`."""

    def __init__(self, cudart: Any, nbytes: int, what: str) -> None:
        self._cudart = cudart
        self.nbytes = max(int(nbytes), 1)
        self.ptr = handle(cuda_call(cudart, cudart.cudaMalloc(self.nbytes), f"cudaMalloc({self.nbytes}) for {what}"))

    def free(self) -> None:
        if self.ptr:
            self._cudart.cudaFree(self.ptr)
            self.ptr = 0


class PinnedBuffer:
    """Page-locked host memory (cudaMallocHost): the only host memory a copy is truly asynchronous with.

    ``cudaMemcpyAsync`` from pageable memory (a numpy array) is staged synchronously by the driver and
    cannot be captured in a CUDA graph; from/to pinned memory it is queued on the stream, so the data
    must stay put until the stream is synchronized (and a download is only readable after that).
    """

    def __init__(self, cudart: Any, nbytes: int, what: str) -> None:
        self._cudart = cudart
        self.nbytes = max(int(nbytes), 1)
        self.ptr = handle(cuda_call(cudart, cudart.cudaMallocHost(self.nbytes), f"cudaMallocHost({self.nbytes}) for {what}"))

    def view(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A numpy array over the first bytes of the buffer (no copy)."""
        dtype = np.dtype(dtype)
        n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if n > self.nbytes:
            raise ValueError(f"{n} bytes do not fit the pinned buffer of {self.nbytes}")
        raw = (ctypes.c_char * max(n, 1)).from_address(self.ptr)
        return np.frombuffer(memoryview(raw), dtype=dtype, count=int(np.prod(shape, dtype=np.int64))).reshape(shape)

    def free(self) -> None:
        if self.ptr:
            self._cudart.cudaFreeHost(self.ptr)
            self.ptr = 0


@dataclass(frozen=True)
class DeviceTensor:
    """A tensor in device memory (a view of a stage's buffer, valid until that stage runs again)."""

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize
