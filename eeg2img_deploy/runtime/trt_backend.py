"""The TensorRT backend: one serialized engine per stage, run by tensor name on one CUDA stream.

CUDA binding: cuda-python (``cuda.bindings.runtime``; ``from cuda import cudart`` before cuda-python
12.6). It is NVIDIA's own thin 1:1 binding of the CUDA runtime API, the one TensorRT's samples use,
a small wheel in the ``[tensorrt]`` extra, and it exposes stream capture and CUDA graphs directly.
pycuda needs a compiler and manages contexts implicitly (``autoinit``); cupy is a 100+ MB array
library for what here is malloc, memcpy and a stream.

Before anything touches TensorRT, :func:`check_engine_compatible` compares the engine's recorded
TensorRT version and GPU compute capability with this machine (a plan loads only on the exact
TensorRT version and GPU architecture it was built for), and :func:`cuda_device` checks that a CUDA
device exists at all (``trt.Runtime`` is created happily without one and fails later).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, EngineError, ManifestError
from ..manifest import Artifact, TensorSpec, read_manifest

log = logging.getLogger(__name__)

PIP_HINT = "pip install 'eeg2img-deploy[tensorrt]'"

# Every TensorRT name this module uses (checked against the real bindings by
# tests/engines/test_tensorrt_api_names.py, for TensorRT 10.3 and 11.x).
TRT_API_USED = (
    "__version__",
    "ILogger",
    "ILogger.__init__",
    "ILogger.log",
    "ILogger.Severity",
    "Severity.INTERNAL_ERROR",
    "Severity.ERROR",
    "Severity.WARNING",
    "Severity.INFO",
    "Severity.VERBOSE",
    "Runtime",
    "Runtime.deserialize_cuda_engine",
    "TensorIOMode",
    "TensorIOMode.INPUT",
    "nptype",
    "ICudaEngine.num_io_tensors",
    "ICudaEngine.get_tensor_name",
    "ICudaEngine.get_tensor_mode",
    "ICudaEngine.get_tensor_dtype",
    "ICudaEngine.create_execution_context",
    "ICudaEngine.weight_streaming_budget_v2",
    "IExecutionContext.set_input_shape",
    "IExecutionContext.all_binding_shapes_specified",
    "IExecutionContext.infer_shapes",
    "IExecutionContext.get_tensor_shape",
    "IExecutionContext.set_tensor_address",
    "IExecutionContext.execute_async_v3",
)


# ---- imports and the machine ------------------------------------------------------------------------
def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendUnavailableError(
            f"TensorRT is not installed ({e}): on a machine with an NVIDIA GPU run `{PIP_HINT}`, "
            "or use --backend onnxruntime"
        ) from e
    return trt


def import_cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError as e:
            raise BackendUnavailableError(
                f"the CUDA Python bindings are not installed ({e}): run `{PIP_HINT}` (it installs cuda-python)"
            ) from e
    return cudart


def cuda_call(cudart: Any, result: Any, what: str) -> Any:
    """cuda-python returns ``(err, *values)``; raise on an error, return the value(s)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        _, text = cudart.cudaGetErrorString(err)
        text = text.decode() if isinstance(text, bytes) else str(text)
        raise EngineError(f"CUDA call {what} failed: {text} ({int(err)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


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
    if int(err) != 0 or count == 0:
        _, text = cudart.cudaGetErrorString(err)
        text = text.decode() if isinstance(text, bytes) else str(text)
        raise BackendUnavailableError(
            f"no CUDA GPU found (cudaGetDeviceCount: {text if int(err) else '0 devices'}): TensorRT engines "
            "need an NVIDIA GPU with its driver; use --backend onnxruntime on this machine"
        )
    props = cuda_call(cudart, cudart.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    free, total = cuda_call(cudart, cudart.cudaMemGetInfo(), "cudaMemGetInfo")
    return CudaDevice(index, name.rstrip("\x00"), f"{props.major}.{props.minor}", int(total), int(free))


def make_trt_logger(trt: Any, sink: list[str] | None = None) -> Any:
    """A TensorRT logger that forwards to :mod:`logging` and keeps errors for the exception message."""

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = sink if sink is not None else []

        def log(self, severity: Any, msg: str) -> None:
            S = trt.ILogger.Severity
            if severity in (S.INTERNAL_ERROR, S.ERROR):
                self.errors.append(msg)
                log.error("TensorRT: %s", msg)
            elif severity == S.WARNING:
                log.warning("TensorRT: %s", msg)
            elif severity == S.INFO:
                log.debug("TensorRT: %s", msg)

    return _Logger()


# ---- compatibility ---------------------------------------------------------------------------------
def rebuild_command(bundle: str) -> str:
    return f"eeg2img-deploy build-engines --bundle {bundle} --backend tensorrt"


def check_engine_compatible(artifact: Artifact, tensorrt_version: str, compute_capability: str, bundle: str) -> None:
    """Refuse an engine recorded for another TensorRT version or GPU architecture, naming the fix."""
    info = artifact.engine
    if info is None or info.tensorrt_version is None or info.compute_capability is None:
        raise ManifestError(
            f"{artifact.file} has no TensorRT version / compute capability in manifest.json: "
            f"it is not a TensorRT engine folder; run `{rebuild_command(bundle)}`"
        )
    if info.tensorrt_version != tensorrt_version or info.compute_capability != compute_capability:
        raise EngineError(
            f"engine {artifact.file} was built for TensorRT {info.tensorrt_version} / sm_{info.compute_capability.replace('.', '')}"
            f" ({info.gpu_name}), this machine has TensorRT {tensorrt_version} / sm_{compute_capability.replace('.', '')}:"
            f" run `{rebuild_command(bundle)}` on this machine"
        )


# ---- the stage -------------------------------------------------------------------------------------
class TensorRTStage:
    """One engine, one execution context, one stream. Buffers grow only when a bigger shape comes."""

    def __init__(
        self,
        plan_path: str | Path,
        artifact: Artifact,
        *,
        bundle_hint: str = "<bundle folder>",
        cuda_graph: bool = False,
        weight_streaming_budget_bytes: int | None = None,
    ) -> None:
        self.artifact = artifact
        trt = import_tensorrt()
        cudart = import_cudart()
        device = cuda_device(cudart)  # before trt.Runtime: without a GPU it is created and crashes later
        check_engine_compatible(artifact, trt.__version__, device.compute_capability, bundle_hint)
        self._trt, self._cudart = trt, cudart
        self._errors: list[str] = []
        self._logger = make_trt_logger(trt, self._errors)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(Path(plan_path).read_bytes())
        if self._engine is None:
            raise EngineError(f"TensorRT could not load {plan_path}: {'; '.join(self._errors) or 'no message'}")
        streams = bool(artifact.engine and artifact.engine.key.get("builder_flags", {}).get("weight_streaming"))
        if weight_streaming_budget_bytes is not None and streams:  # settable only on weight-streaming engines
            self._engine.weight_streaming_budget_v2 = int(weight_streaming_budget_bytes)
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineError(f"TensorRT could not create an execution context for {plan_path}: {'; '.join(self._errors)}")
        self._names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._input_names = [n for n in self._names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._output_names = [n for n in self._names if n not in self._input_names]
        self._dtypes = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in self._names}
        self._check_io_matches_manifest()
        self._stream = cuda_call(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, capacity in bytes)
        self._use_graph = cuda_graph
        self._graph: tuple[Any, Any] | None = None  # (graph, graph exec) for self._graph_shapes
        self._graph_shapes: dict[str, tuple[int, ...]] | None = None
        self._last_shapes: dict[str, tuple[int, ...]] | None = None

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.artifact.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.artifact.outputs

    def _check_io_matches_manifest(self) -> None:
        want = {t.name: np.dtype(t.dtype) for t in (*self.artifact.inputs, *self.artifact.outputs)}
        have = dict(self._dtypes)
        if want != have:
            raise EngineError(
                f"engine {self.artifact.file} has I/O {sorted((k, str(v)) for k, v in have.items())}, "
                f"manifest.json says {sorted((k, str(v)) for k, v in want.items())}: the folder is inconsistent; "
                "build the engines again"
            )

    # ---- buffers --------------------------------------------------------------------------------
    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, cap = self._buffers.get(name, (0, 0))
        if nbytes > cap:
            if ptr:
                cuda_call(self._cudart, self._cudart.cudaFree(ptr), "cudaFree")
            ptr = cuda_call(self._cudart, self._cudart.cudaMalloc(max(nbytes, 1)), f"cudaMalloc({nbytes}) for {name}")
            self._buffers[name] = (int(ptr), nbytes)
            self._drop_graph()  # the captured graph points at the old buffer
        return self._buffers[name][0]

    # ---- run ------------------------------------------------------------------------------------
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self._input_names if n not in feeds]
        if missing:
            raise ValueError(f"{self.artifact.stage}: missing inputs {missing}; it takes {self._input_names}")
        cudart = self._cudart
        shapes: dict[str, tuple[int, ...]] = {}
        for name in self._input_names:
            arr = feeds[name]
            if arr.dtype != self._dtypes[name]:
                raise ValueError(f"{self.artifact.stage}: input {name!r} is {arr.dtype}, the engine takes {self._dtypes[name]}")
            shapes[name] = tuple(arr.shape)
            if not self._context.set_input_shape(name, shapes[name]):
                raise EngineError(
                    f"{self.artifact.stage}: input {name!r} shape {shapes[name]} is outside the engine's profile "
                    f"({'; '.join(self._errors[-1:]) or 'see the TensorRT log'}); build engines with a larger --max-batch"
                )
        unresolved = self._context.infer_shapes()
        if unresolved or not self._context.all_binding_shapes_specified:
            raise EngineError(f"{self.artifact.stage}: TensorRT could not infer the shapes of {list(unresolved)}")
        out_shapes = {n: tuple(self._context.get_tensor_shape(n)) for n in self._output_names}
        for name in self._names:
            shape = shapes.get(name) or out_shapes[name]
            if any(d < 0 for d in shape):
                raise EngineError(f"{self.artifact.stage}: output {name!r} has a data-dependent shape {shape}")
            ptr = self._buffer(name, int(np.prod(shape, dtype=np.int64)) * self._dtypes[name].itemsize)
            self._context.set_tensor_address(name, ptr)
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        for name in self._input_names:
            arr = np.ascontiguousarray(feeds[name])
            cuda_call(cudart, cudart.cudaMemcpyAsync(self._buffers[name][0], arr.ctypes.data, arr.nbytes, h2d, self._stream), "cudaMemcpyAsync")
        self._execute(shapes)
        results: dict[str, np.ndarray] = {}
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name in self._output_names:
            out = np.empty(out_shapes[name], dtype=self._dtypes[name])
            cuda_call(cudart, cudart.cudaMemcpyAsync(out.ctypes.data, self._buffers[name][0], out.nbytes, d2h, self._stream), "cudaMemcpyAsync")
            results[name] = out
        cuda_call(cudart, cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return results

    def _execute(self, shapes: dict[str, tuple[int, ...]]) -> None:
        cudart = self._cudart
        if self._use_graph and self._graph is not None and shapes == self._graph_shapes:
            cuda_call(cudart, cudart.cudaGraphLaunch(self._graph[1], self._stream), "cudaGraphLaunch")
            return
        if self._use_graph and shapes == self._last_shapes and self._capture(shapes):
            return
        if not self._context.execute_async_v3(int(self._stream)):
            raise EngineError(f"{self.artifact.stage}: TensorRT execution failed: {'; '.join(self._errors[-3:])}")
        self._last_shapes = shapes

    def _capture(self, shapes: dict[str, tuple[int, ...]]) -> bool:
        """Capture one enqueue as a CUDA graph after a warm run with the same shapes; False: run eagerly."""
        cudart = self._cudart
        self._drop_graph()
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        cuda_call(cudart, cudart.cudaStreamBeginCapture(self._stream, mode), "cudaStreamBeginCapture")
        ok = self._context.execute_async_v3(int(self._stream))
        graph = cuda_call(cudart, cudart.cudaStreamEndCapture(self._stream), "cudaStreamEndCapture")
        if not ok:
            log.warning("%s: CUDA graph capture failed; running without graphs", self.artifact.stage)
            cudart.cudaGraphDestroy(graph)
            self._use_graph = False
            return False
        graph_exec = cuda_call(cudart, cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        self._graph, self._graph_shapes = (graph, graph_exec), shapes
        cuda_call(cudart, cudart.cudaGraphLaunch(graph_exec, self._stream), "cudaGraphLaunch")
        return True

    def _drop_graph(self) -> None:
        if self._graph is not None:
            graph, graph_exec = self._graph
            self._cudart.cudaGraphExecDestroy(graph_exec)
            self._cudart.cudaGraphDestroy(graph)
            self._graph, self._graph_shapes = None, None

    def close(self) -> None:
        if getattr(self, "_cudart", None) is None:
            return
        self._drop_graph()
        for ptr, _ in self._buffers.values():
            self._cudart.cudaFree(ptr)
        self._buffers.clear()
        if getattr(self, "_stream", None) is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None
        self._context = self._engine = self._runtime = None
        self._cudart = None

    def __enter__(self) -> TensorRTStage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_tensorrt_stage(
    folder: str | Path,
    artifact: Artifact,
    *,
    cuda_graph: bool | None = None,
    weight_streaming_budget_bytes: int | None = None,
) -> TensorRTStage:
    """Open ``artifact`` (a TensorRT engine listed in ``folder``'s manifest) as a :class:`TensorRTStage`.

    ``cuda_graph`` and the weight-streaming budget default to what ``build-engines`` recorded in the
    manifest's ``settings['engines']``.
    """
    folder = Path(folder)
    bundle_hint, runtime_settings = "<bundle folder>", {}
    try:
        manifest = read_manifest(folder)
        if manifest.parent and manifest.parent.get("bundle"):
            bundle_hint = f"export/{manifest.parent['bundle']}"
        runtime_settings = manifest.settings.get("engines", {})
    except ManifestError:
        pass  # the caller holds the artifact already; the hint stays generic
    if cuda_graph is None:
        cuda_graph = bool(runtime_settings.get("cuda_graphs", False))
    if weight_streaming_budget_bytes is None:
        weight_streaming_budget_bytes = runtime_settings.get("weight_streaming_budget_bytes", {}).get(artifact.stage)
    return TensorRTStage(
        folder / artifact.file,
        artifact,
        bundle_hint=bundle_hint,
        cuda_graph=cuda_graph,
        weight_streaming_budget_bytes=weight_streaming_budget_bytes,
    )
