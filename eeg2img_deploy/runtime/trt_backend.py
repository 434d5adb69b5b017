"""The TensorRT backend: one serialized engine per stage, run by tensor name on a CUDA stream.

Before anything touches TensorRT, :func:`check_engine_compatible` compares the engine's recorded
TensorRT version and GPU compute capability with this machine (a plan loads only on the exact
TensorRT version and GPU architecture it was built for), and :func:`~..gpu.cuda_device` checks that
a usable CUDA device exists (``trt.Runtime`` is created happily without one and fails later).

How a stage runs (as NVIDIA's ``samples/python/common_runtime.py`` and ``demo/Diffusion`` do):
* every I/O buffer is allocated once, at the profile's largest shapes, and bound once, so nothing is
  allocated while running (or while capturing a CUDA graph) and graphs stay valid;
* host data goes through page-locked (pinned) staging buffers, the only memory ``cudaMemcpyAsync``
  is asynchronous with; the stream is synchronized before a download is read;
* a batch below the profile's minimum (a static ``jetson-orin`` profile, or a partial last chunk) is
  padded to it and the padding rows are dropped from the outputs, along each tensor's own batch axis (the
  caption's KV cache carries it second: ``(2 * layers, B, heads, P, head_dim)``);
* with CUDA graphs, a graph is captured on the second run at the same shapes (the first enqueue at
  new shapes sets TensorRT up, which allocates) and replayed while the shapes stay; a shape change
  drops it (the context re-plans); a failed capture runs the work eagerly and stops capturing;
* inputs may be :class:`~..gpu.DeviceTensor`s (another stage's output on the same stream, copied
  device to device) and outputs can stay on the device: a chain of stages never visits the host.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EngineError, ManifestError
from ..gpu import (
    DeviceBuffer,
    DeviceTensor,
    PinnedBuffer,
    cuda_call,
    cuda_device,
    handle,
    import_cudart,
    import_tensorrt,
    trt_logger,
)
from ..manifest import Artifact
from .backend import ArtifactSpecs

log = logging.getLogger(__name__)

# Every TensorRT name this module uses (checked against the real bindings by
# tests/engines/test_tensorrt_api_names.py, for TensorRT 10.3 and 11.x).
TRT_API_USED = (
    "__version__",
    "Runtime",
    "Runtime.deserialize_cuda_engine",
    "TensorIOMode",
    "TensorIOMode.INPUT",
    "nptype",
    "ICudaEngine.num_io_tensors",
    "ICudaEngine.get_tensor_name",
    "ICudaEngine.get_tensor_mode",
    "ICudaEngine.get_tensor_dtype",
    "ICudaEngine.get_tensor_profile_shape",
    "ICudaEngine.create_execution_context",
    "ICudaEngine.weight_streaming_budget_v2",
    "IExecutionContext.set_input_shape",
    "IExecutionContext.infer_shapes",
    "IExecutionContext.get_tensor_shape",
    "IExecutionContext.set_tensor_address",
    "IExecutionContext.execute_async_v3",
)
Shapes = tuple[tuple[str, tuple[int, ...]], ...]
# The export's batch axes (``StageExport.batch_axis``): padded and cut per tensor. A cache length ("past") is not one.
BATCH_AXES = frozenset({"batch", "batch2"})


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


# ---- the stream several stages share -----------------------------------------------------------------
class CudaStream:
    """One non-blocking CUDA stream; stages chained on it need no synchronization between them."""

    def __init__(self, cudart: Any | None = None) -> None:
        self.cudart = cudart or import_cudart()
        # non-blocking: no implicit synchronization with the legacy default stream, which other libraries in
        # the process (onnxruntime, torch) may use; work on it would also invalidate a capture on a blocking stream
        flags = self.cudart.cudaStreamNonBlocking
        self.stream = cuda_call(self.cudart, self.cudart.cudaStreamCreateWithFlags(flags), "cudaStreamCreateWithFlags")
        self.handle = handle(self.stream)

    def synchronize(self) -> None:
        cuda_call(self.cudart, self.cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def copy(self, dst: int, src: int, nbytes: int, kind: str) -> None:
        k = getattr(self.cudart.cudaMemcpyKind, f"cudaMemcpy{kind}")
        cuda_call(self.cudart, self.cudart.cudaMemcpyAsync(dst, src, nbytes, k, self.stream), f"cudaMemcpyAsync {kind}")

    def close(self) -> None:
        if self.stream is not None:
            self.cudart.cudaStreamSynchronize(self.stream)
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None


# ---- the stage -------------------------------------------------------------------------------------
class TensorRTStage(ArtifactSpecs):
    """One engine, one execution context, buffers at the profile's largest shapes, a (shared) stream."""

    def __init__(
        self,
        plan_path: str | Path,
        artifact: Artifact,
        *,
        bundle_hint: str = "<bundle folder>",
        cuda_graph: bool = False,
        weight_streaming_budget_bytes: int | None = None,
        stream: CudaStream | None = None,
    ) -> None:
        self.artifact = artifact
        # each tensor's batch axis (padded and cut), by the axis names of its spec
        self._batch_axis = {t.name: next((i for i, d in enumerate(t.shape) if d in BATCH_AXES), None)
                            for t in (*artifact.inputs, *artifact.outputs)}
        self._cudart = None
        trt = import_tensorrt()
        cudart = import_cudart()
        device = cuda_device(cudart)  # before trt.Runtime: without a GPU it is created and crashes later
        check_engine_compatible(artifact, trt.__version__, device.compute_capability, bundle_hint)
        self._cudart = cudart
        self._logger = trt_logger(trt)
        self._mark = self._logger.mark()  # this stage's errors are those logged from here on
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(Path(plan_path).read_bytes())
        if self._engine is None:
            raise EngineError(f"TensorRT could not load {plan_path}: {'; '.join(self._errors()) or 'no message'}")
        streams = bool(artifact.engine and artifact.engine.key.tensorrt.weight_streaming)
        if weight_streaming_budget_bytes is not None and streams:  # settable only on weight-streaming engines
            self._engine.weight_streaming_budget_v2 = int(weight_streaming_budget_bytes)
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineError(f"TensorRT could not create an execution context for {plan_path}: {'; '.join(self._errors())}")
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if n not in self._inputs]
        self._dtypes = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in names}
        self._check_io_matches_manifest()
        self._profile = {n: [tuple(s) for s in self._engine.get_tensor_profile_shape(n, 0)] for n in self._inputs}
        self._own_stream = stream is None
        self._stream = stream or CudaStream(cudart)
        self._device: dict[str, DeviceBuffer] = {}
        self._pinned: dict[str, PinnedBuffer] = {}
        self._shapes_set: tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]] | None = None  # (in, out)
        self._allocate()
        # a weight-streaming engine's enqueue is synchronous (NvInferRuntime.h): it cannot be captured
        self._use_graph = cuda_graph and not streams
        if cuda_graph and streams:
            log.info("%s: weight streaming: running without CUDA graphs (its enqueue is synchronous)", artifact.stage)
        self._graph: tuple[Shapes, Any] | None = None  # (input shapes, graph exec)
        self._last_key: Shapes | None = None  # the shapes of the last eager enqueue
        self._uploads_pending = False
        self._resident: dict[str, np.ndarray | DeviceTensor] = {}  # inputs fixed across runs
        self._resident_at: dict[str, tuple[int, ...]] = {}  # the padded shape each was uploaded at

    @property
    def _cuda(self) -> Any:
        """The CUDA runtime bindings (``cuda.cudart``, untyped) of an open stage."""
        if self._cudart is None:
            raise EngineError(f"{self.artifact.stage}: this TensorRT stage is closed")
        return self._cudart

    def _errors(self, last: int | None = None) -> list[str]:
        return self._logger.errors_since(self._mark, last)

    @property
    def stream(self) -> CudaStream:
        return self._stream

    on_device = True  # outputs can stay on the device (``keep_on_device``)

    def to_host(self, value: DeviceTensor) -> np.ndarray:
        """Download one of this stage's outputs kept on the device (through its pinned buffer)."""
        name = next((n for n in self._outputs if self._device[n].ptr == value.ptr), None)
        if name is None:
            raise ValueError(f"{self.artifact.stage}: {value} is not one of this stage's outputs")
        self._stream.copy(self._pinned[name].ptr, value.ptr, value.nbytes, "DeviceToHost")
        self._stream.synchronize()
        return self._pinned[name].view(value.shape, value.dtype).copy()

    def _check_io_matches_manifest(self) -> None:
        want = {t.name: np.dtype(t.dtype) for t in (*self.artifact.inputs, *self.artifact.outputs)}
        if want != self._dtypes:
            raise EngineError(
                f"engine {self.artifact.file} has I/O {sorted((k, str(v)) for k, v in self._dtypes.items())}, "
                f"manifest.json says {sorted((k, str(v)) for k, v in want.items())}: the folder is inconsistent; "
                "build the engines again"
            )

    def _allocate(self) -> None:
        """Device and pinned buffers for the largest shapes, bound once (graphs keep these addresses)."""
        largest = {n: self._profile[n][2] for n in self._inputs}
        out = self._set_shapes(largest)
        for name, shape in (*largest.items(), *out.items()):
            nbytes = int(np.prod(shape, dtype=np.int64)) * self._dtypes[name].itemsize
            self._device[name] = DeviceBuffer(self._cudart, nbytes, f"{self.artifact.stage}/{name}")
            self._pinned[name] = PinnedBuffer(self._cudart, nbytes, f"{self.artifact.stage}/{name}")
            if not self._context.set_tensor_address(name, self._device[name].ptr):  # False: not bound (name, alignment)
                raise EngineError(f"{self.artifact.stage}: TensorRT refused the buffer of {name!r}: {'; '.join(self._errors(1))}")

    def _set_shapes(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        """Set the input shapes and return the output shapes; nothing to do when they did not change (the
        context keeps them, and set_input_shape + infer_shapes cost host time on every step of a loop)."""
        if self._shapes_set is not None and self._shapes_set[0] == shapes:
            return self._shapes_set[1]
        self._shapes_set = None
        for name, shape in shapes.items():
            if not self._context.set_input_shape(name, shape):
                lo, _, hi = self._profile[name]
                raise EngineError(
                    f"{self.artifact.stage}: input {name!r} shape {shape} is outside the engine's profile {lo}..{hi} "
                    f"({'; '.join(self._errors(1)) or 'see the TensorRT log'}): rebuild the engines with "
                    "`eeg2img-deploy build-engines --max-batch N` for a larger batch (or export the bundle again for "
                    "another image size)"
                )
        try:
            unresolved = self._context.infer_shapes()
        except RuntimeError as e:  # the binding raises when the shapes contradict the network (e.g. two batch sizes)
            raise EngineError(f"{self.artifact.stage}: TensorRT cannot run inputs of shapes {shapes}: "
                              f"{'; '.join(self._errors(1)) or e}") from None  # fmt: skip
        if unresolved:
            raise EngineError(f"{self.artifact.stage}: TensorRT could not infer the shapes of {list(unresolved)}")
        out = {n: tuple(self._context.get_tensor_shape(n)) for n in self._outputs}
        for name, shape in out.items():
            if any(d < 0 for d in shape):
                raise EngineError(f"{self.artifact.stage}: output {name!r} has a data-dependent shape {shape}")
        self._shapes_set = (dict(shapes), out)
        return out

    # ---- run ------------------------------------------------------------------------------------
    def set_resident(self, name: str, value: Any) -> None:
        """An input that stays the same for the next runs: uploaded (or copied on the device) once, then left
        out of their feeds. A DeviceTensor must stay valid as long (its stage does not run meanwhile)."""
        self._resident[name] = value if isinstance(value, DeviceTensor) else np.ascontiguousarray(value)
        self._resident_at.pop(name, None)

    def run(self, feeds: dict[str, Any], *, keep_on_device: tuple[str, ...] = ()) -> dict[str, Any]:
        """Run once. ``feeds``: numpy arrays or DeviceTensors; outputs named in ``keep_on_device`` come back
        as DeviceTensors (valid until this stage runs again), the others as numpy arrays."""
        _ = self._cuda  # a closed stage is refused before any work
        feeds = {**self._resident, **feeds}
        missing = [n for n in self._inputs if n not in feeds]
        if missing:
            raise ValueError(f"{self.artifact.stage}: missing inputs {missing}; it takes {self._inputs}")
        for name in self._inputs:
            if np.dtype(feeds[name].dtype) != self._dtypes[name]:
                raise ValueError(f"{self.artifact.stage}: input {name!r} is {feeds[name].dtype}, the engine takes {self._dtypes[name]}")
        shapes, rows = self._padded_shapes({n: tuple(feeds[n].shape) for n in self._inputs})
        out_shapes = self._set_shapes(shapes)
        if self._uploads_pending and any(isinstance(feeds[n], np.ndarray) for n in self._inputs):
            self._stream.synchronize()  # the pinned staging buffers are still being read by the last upload
        for name in self._inputs:
            value = feeds[name]
            if value is self._resident.get(name):
                if self._resident_at.get(name) == shapes[name]:
                    continue  # still in the input buffer from an earlier run
                self._resident_at[name] = shapes[name]
            self._upload(name, value, shapes[name])
        self._execute(tuple(sorted(shapes.items())))
        results: dict[str, Any] = {}
        host = [n for n in self._outputs if n not in keep_on_device]
        for name in self._outputs:
            shape, cut = self._unpadded(name, out_shapes[name], rows), self._batch_axis.get(name)
            if name in keep_on_device:
                if shape != out_shapes[name] and cut:  # the real rows are not one block at the buffer's start
                    raise ValueError(f"{self.artifact.stage}: {name!r} is padded along axis {cut}: it cannot stay "
                                     "on the device")
                results[name] = DeviceTensor(self._device[name].ptr, shape, self._dtypes[name])
            else:  # a padded leading axis: download the real rows only; another one: all, cut on the host
                down = shape if not cut else out_shapes[name]
                nbytes = int(np.prod(down, dtype=np.int64)) * self._dtypes[name].itemsize
                self._stream.copy(self._pinned[name].ptr, self._device[name].ptr, nbytes, "DeviceToHost")
        self._uploads_pending = not host
        if host:
            self._stream.synchronize()  # before reading a download
            for name in host:
                shape, cut = self._unpadded(name, out_shapes[name], rows), self._batch_axis.get(name)
                view = self._pinned[name].view(shape if not cut else out_shapes[name], self._dtypes[name])
                results[name] = view[(slice(None),) * cut + (slice(0, shape[cut]),)].copy() if cut else view.copy()
        return {n: results[n] for n in self._outputs}

    def _padded_shapes(self, shapes: dict[str, tuple[int, ...]]) -> tuple[dict[str, tuple[int, ...]], tuple[int, int] | None]:
        """Pad each input's batch axis up to the profile's minimum (static profiles); (real, padded) size of the
        first one padded, or None. Other dynamic axes (a cache length) keep their size: no padding there."""
        rows = None
        out = dict(shapes)
        for name, shape in shapes.items():
            lo, axis = self._profile[name][0], self._batch_axis.get(name)
            if axis is not None and len(lo) == len(shape) and shape[axis] < lo[axis]:
                out[name] = (*shape[:axis], lo[axis], *shape[axis + 1 :])
                rows = rows or (shape[axis], lo[axis])
        return out, rows

    def _unpadded(self, name: str, shape: tuple[int, ...], rows: tuple[int, int] | None) -> tuple[int, ...]:
        """An output's shape without the padding rows, along its batch axis (sizes scale: "batch2" is 2x)."""
        axis = self._batch_axis.get(name)
        if rows is None or axis is None:
            return shape
        real, padded = rows
        return (*shape[:axis], shape[axis] * real // padded, *shape[axis + 1 :])

    def _upload(self, name: str, value: Any, padded: tuple[int, ...]) -> None:
        dst, axis = self._device[name].ptr, self._batch_axis.get(name)
        if isinstance(value, DeviceTensor):
            if tuple(value.shape) != padded and axis:
                raise ValueError(f"{self.artifact.stage}: a device tensor for {name!r} cannot be padded along "
                                 f"axis {axis}")
            self._stream.copy(dst, value.ptr, value.nbytes, "DeviceToDevice")
            row = value.nbytes // max(value.shape[0], 1) if value.shape else 0
            for i in range(value.shape[0] if value.shape else 0, padded[0] if padded else 0):  # pad: repeat the last row
                self._stream.copy(dst + i * row, value.ptr + value.nbytes - row, row, "DeviceToDevice")
            return
        staging = self._pinned[name].view(padded, self._dtypes[name])
        if axis is None or value.shape == padded:
            staging[...] = value
        else:  # pad: repeat the last row along the batch axis (real data, so no NaN or overflow in the padding)
            lead, n = (slice(None),) * axis, value.shape[axis]
            staging[(*lead, slice(0, n))] = value
            staging[(*lead, slice(n, None))] = value[(*lead, slice(n - 1, n))]
        self._stream.copy(dst, self._pinned[name].ptr, staging.nbytes, "HostToDevice")

    def _execute(self, key: Shapes) -> None:
        """Eagerly, or by replaying the graph of these shapes. A graph is valid only while the context has
        enqueued nothing at other shapes since its capture (TensorRT re-plans at a shape change), so a
        change drops it; the second run at the new shapes captures again (the first one warms up)."""
        cudart, stream = self._cuda, self._stream
        if self._graph is not None and self._graph[0] == key and self._last_key == key:
            cuda_call(cudart, cudart.cudaGraphLaunch(self._graph[1], stream.stream), "cudaGraphLaunch")
            return
        if self._use_graph and self._last_key == key and self._capture(key):
            return
        self._drop_graph()
        if not self._context.execute_async_v3(stream.handle):
            raise EngineError(f"{self.artifact.stage}: TensorRT execution failed: {'; '.join(self._errors(3))}")
        self._last_key = key

    def _capture(self, key: Shapes) -> bool:
        """Capture one enqueue at ``key``'s shapes as a CUDA graph and launch it; False: nothing ran (run eagerly)."""
        cudart, stream = self._cuda, self._stream
        self._drop_graph()
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        cuda_call(cudart, cudart.cudaStreamBeginCapture(stream.stream, mode), "cudaStreamBeginCapture")
        ok = self._context.execute_async_v3(stream.handle)
        err, graph = cudart.cudaStreamEndCapture(stream.stream)  # not cuda_call: a failed capture is not fatal
        if not ok or err != cudart.cudaError_t.cudaSuccess or graph is None:
            if graph is not None:
                cudart.cudaGraphDestroy(graph)
            cudart.cudaGetLastError()  # clear the capture's error: TensorRT's launch checks would report it later
            log.warning("%s: CUDA graph capture failed (%s); running without CUDA graphs", self.artifact.stage,
                        "enqueue failed" if not ok else repr(err))  # fmt: skip
            self._use_graph = False
            return False
        graph_exec = cuda_call(cudart, cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        cudart.cudaGraphDestroy(graph)  # the exec keeps what it needs
        self._graph = (key, graph_exec)
        cuda_call(cudart, cudart.cudaGraphLaunch(graph_exec, stream.stream), "cudaGraphLaunch")
        return True

    def _drop_graph(self) -> None:
        if self._graph is not None:
            self._cuda.cudaGraphExecDestroy(self._graph[1])
            self._graph = None

    def close(self) -> None:
        if self._cudart is None:
            return
        if getattr(self, "_stream", None) is not None:
            self._stream.synchronize()
        if getattr(self, "_graph", None) is not None:
            self._drop_graph()
        for buf in (*getattr(self, "_device", {}).values(), *getattr(self, "_pinned", {}).values()):
            buf.free()
        if getattr(self, "_own_stream", False):
            self._stream.close()
        self._device, self._pinned = {}, {}
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
    bundle_hint: str = "<bundle folder>",
    cuda_graph: bool = False,
    weight_streaming_budget_bytes: int | None = None,
    stream: CudaStream | None = None,
) -> TensorRTStage:
    """Open ``artifact`` (a TensorRT engine in ``folder``). The caller passes what its manifest says:
    ``bundle_hint`` (the parent bundle, for the rebuild command), CUDA graphs, the weight-streaming budget."""
    return TensorRTStage(
        Path(folder) / artifact.file,
        artifact,
        bundle_hint=bundle_hint,
        cuda_graph=cuda_graph,
        weight_streaming_budget_bytes=weight_streaming_budget_bytes,
        stream=stream,
    )
