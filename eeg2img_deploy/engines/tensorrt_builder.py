"""Build one TensorRT engine from one ONNX file through the TensorRT Python API.

The network is always created STRONGLY_TYPED: the ONNX carries the precision (an fp16 export is fp16
in the graph), which is the only way TensorRT 11 builds reduced precision (its FP16/INT8 builder flags
are gone) and what weight streaming requires. EXPLICIT_BATCH is not passed: it is the only mode in
TensorRT 10 (the flag is deprecated and ignored) and the flag no longer exists in 11.

Timing caches are kept per (TensorRT version, GPU) beside the engines and written atomically after
each build, so the second stage and every later rebuild reuse the tactic timings.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import EngineError
from ..fileio import atomic_path, atomic_write_bytes
from ..gpu import (
    CudaDevice,
    cuda_device,
    import_cudart,
    import_tensorrt,
    trt_logger,
)
from ..manifest import AxisRange, ShapeRange, TensorSpec
from .cache_key import sm_tag

log = logging.getLogger(__name__)

# Every TensorRT name this module uses (checked against the real bindings by
# tests/engines/test_tensorrt_api_names.py, for TensorRT 10.3 and 11.x).
TRT_API_USED = (
    "__version__",
    "Builder",
    "Builder.create_network",
    "Builder.create_builder_config",
    "Builder.create_optimization_profile",
    "Builder.build_serialized_network",
    "NetworkDefinitionCreationFlag",
    "NetworkDefinitionCreationFlag.STRONGLY_TYPED",
    "INetworkDefinition.num_inputs",
    "INetworkDefinition.get_input",
    "ITensor.name",
    "ITensor.shape",
    "OnnxParser",
    "OnnxParser.parse_from_file",
    "OnnxParser.num_errors",
    "OnnxParser.get_error",
    "IBuilderConfig.builder_optimization_level",
    "IBuilderConfig.set_memory_pool_limit",
    "IBuilderConfig.set_flag",
    "IBuilderConfig.clear_flag",
    "IBuilderConfig.add_optimization_profile",
    "IBuilderConfig.create_timing_cache",
    "IBuilderConfig.set_timing_cache",
    "IBuilderConfig.get_timing_cache",
    "IBuilderConfig.progress_monitor",
    "ITimingCache.serialize",
    "IOptimizationProfile.set_shape",
    "MemoryPoolType",
    "MemoryPoolType.WORKSPACE",
    "BuilderFlag",
    "BuilderFlag.WEIGHT_STREAMING",
    "BuilderFlag.TF32",
    "IProgressMonitor",
    "IProgressMonitor.__init__",
    "IProgressMonitor.phase_start",
    "IProgressMonitor.step_complete",
    "IProgressMonitor.phase_finish",
)


@dataclass(frozen=True)
class TrtEnvironment:
    tensorrt_version: str
    device: CudaDevice


def tensorrt_environment() -> TrtEnvironment:
    """TensorRT's version and the GPU; raises BackendUnavailableError (with the fix) when either is missing."""
    trt = import_tensorrt()
    device = cuda_device(import_cudart())
    return TrtEnvironment(str(trt.__version__), device)


@dataclass(frozen=True)
class BuildOptions:
    opt_level: int = 3
    workspace_bytes: int | None = None
    weight_streaming: bool = False
    tf32: bool = True  # TensorRT's default; False for fp32 artifacts, so "fp32" matmuls and convolutions are fp32
    timing_cache: Path | None = None  # the cache file for this TensorRT version and GPU; None: no cache
    progress: bool = True


def shape_profile(inputs: tuple[TensorSpec, ...], axes: dict[str, AxisRange]) -> dict[str, ShapeRange]:
    """Min/opt/max shape of every input from its spec and the axis ranges (static inputs: all equal)."""
    profile: dict[str, ShapeRange] = {}
    for spec in inputs:
        try:
            profile[spec.name] = ShapeRange.of(spec, axes)
        except KeyError as e:
            raise EngineError(
                f"input {spec.name!r} has dynamic axis {e.args[0]!r} but the bundle's settings['axes'] "
                f"has no range for it (it has {sorted(axes)}): export the bundle again"
            ) from None
    return profile


def timing_cache_file(folder: str | Path, tensorrt_version: str, device: CudaDevice) -> Path:
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", device.name).strip("-").lower() or "gpu"
    return Path(folder) / f"timing-trt{tensorrt_version}-{sm_tag(device.compute_capability)}-{gpu}.cache"


def build_engine(
    onnx_path: str | Path,
    plan_path: str | Path,
    *,
    stage: str,
    profile: dict[str, ShapeRange],
    options: BuildOptions,
) -> float:
    """Build ``onnx_path`` into ``plan_path`` (written atomically); return the build time in seconds.

    Raises EngineError with TensorRT's own messages when parsing or building fails, or when the build
    is cancelled (Ctrl-C); nothing is written then.
    """
    trt = import_tensorrt()
    cuda_device(import_cudart())  # a clear "no GPU" error before any TensorRT object exists
    logger = trt_logger(trt)
    mark = logger.mark()
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # from a file, so external weights next to it are found
        msgs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineError(f"TensorRT could not parse {onnx_path}: {'; '.join(msgs) or 'no message'}")

    config = builder.create_builder_config()
    config.builder_optimization_level = options.opt_level
    if options.workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    if options.weight_streaming:
        config.set_flag(trt.BuilderFlag.WEIGHT_STREAMING)
    if not options.tf32:  # on by default: fp32 layers would run TF32 (10-bit mantissa) matmuls and convolutions
        config.clear_flag(trt.BuilderFlag.TF32)
    _add_profile(builder, network, config, profile, stage)
    cache = _load_timing_cache(config, options.timing_cache)

    monitor = make_progress_monitor(trt, stage, show=options.progress)
    config.progress_monitor = monitor
    start = time.perf_counter()
    with monitor, _sigint_cancels(monitor):
        plan = _build_in_thread(builder, network, config)
    seconds = time.perf_counter() - start
    if plan is None:
        if monitor.cancelled:
            raise EngineError(f"the {stage} engine build was cancelled; nothing was written")
        raise EngineError(f"TensorRT could not build the {stage} engine: {'; '.join(logger.errors_since(mark)) or 'no message'}")
    with atomic_path(plan_path) as tmp:
        tmp.write_bytes(memoryview(plan))
    if cache is not None and options.timing_cache is not None:
        atomic_write_bytes(options.timing_cache, memoryview(config.get_timing_cache().serialize()))
    return seconds


def _add_profile(builder: Any, network: Any, config: Any, profile: dict[str, ShapeRange], stage: str) -> None:
    """One optimization profile covering every dynamic input; its shapes must agree with the network."""
    opt_profile = builder.create_optimization_profile()
    dynamic = 0
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        name, dims = tensor.name, tuple(tensor.shape)
        if name not in profile:
            raise EngineError(f"{stage}: the ONNX input {name!r} is not in the manifest (it lists {sorted(profile)})")
        p = profile[name]
        for which, shape in p.to_dict().items():
            fixed_ok = all(d < 0 or d == s for d, s in zip(dims, shape))
            if len(shape) != len(dims) or not fixed_ok:
                raise EngineError(
                    f"{stage}: input {name!r} is {dims} in the ONNX (-1 = dynamic) but its {which} shape "
                    f"from the manifest is {tuple(shape)}: the bundle is inconsistent; export it again"
                )
        if any(d < 0 for d in dims):
            opt_profile.set_shape(name, p.min, p.opt, p.max)
            dynamic += 1
    if dynamic and config.add_optimization_profile(opt_profile) < 0:
        raise EngineError(f"{stage}: TensorRT rejected the optimization profile {profile}")


def _build_in_thread(builder: Any, network: Any, config: Any) -> Any:
    """``build_serialized_network`` on a worker thread while this one waits in Python.

    The build is C++ and calls the progress monitor from its own threads; a Python signal handler
    runs only on the main thread and only between bytecodes, so with the build on the main thread a
    Ctrl-C would be handled only after the build. Here the main thread keeps running Python (a short
    join loop), so Ctrl-C sets ``monitor.cancelled`` at once and the next ``step_complete`` stops it.
    """
    result: list[Any] = []
    failure: list[BaseException] = []

    def build() -> None:
        try:
            result.append(builder.build_serialized_network(network, config))
        except BaseException as e:  # re-raised on the calling thread
            failure.append(e)

    worker = threading.Thread(target=build, name="tensorrt-build", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.05)
    if failure:
        raise failure[0]
    return result[0]


def _load_timing_cache(config: Any, path: Path | None) -> Any:
    """The timing cache from ``path`` (created when missing); an unreadable or foreign one is replaced."""
    if path is None:
        return None
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)  # None when the bytes are not a timing cache
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        why = "is not a readable timing cache" if cache is None else "does not match this TensorRT/GPU"
        log.warning("timing cache %s %s; starting an empty one (it is rewritten after the build)", path, why)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


@contextlib.contextmanager
def _sigint_cancels(monitor: Any) -> Iterator[None]:
    """Ctrl-C during a build asks TensorRT to stop at its next step instead of killing it mid-write."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum: int, frame: Any) -> None:
        log.warning("Ctrl-C: cancelling the engine build at the next step")
        monitor.cancelled = True

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def make_progress_monitor(trt: Any, label: str, *, show: bool = True) -> Any:
    """A ``trt.IProgressMonitor`` that drives a rich progress bar (one row per builder phase).

    Setting ``.cancelled`` makes the next ``step_complete`` return False, which stops the build.
    TensorRT may call it from several threads, hence the lock.
    """

    class _ProgressMonitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.cancelled = False
            self._lock = threading.Lock()
            self._tasks: dict[str, Any] = {}
            self._depth: dict[str, int] = {}
            self._bar = None
            if show:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,
                )

                self._bar = Progress(
                    TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True
                )

        def __enter__(self) -> _ProgressMonitor:
            if self._bar is not None:
                self._bar.start()
            return self

        def __exit__(self, *exc: object) -> None:
            if self._bar is not None:
                self._bar.stop()

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            with self._lock:
                depth = self._depth.get(parent_phase, -1) + 1 if parent_phase else 0
                self._depth[phase_name] = depth
                if self._bar is not None:
                    self._tasks[phase_name] = self._bar.add_task(f"{label}: {'  ' * depth}{phase_name}", total=num_steps)
                log.debug("%s: phase %s (%d steps)", label, phase_name, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            with self._lock:
                if self._bar is not None and phase_name in self._tasks:
                    self._bar.update(self._tasks[phase_name], completed=step + 1)
                return not self.cancelled

        def phase_finish(self, phase_name: str) -> None:
            with self._lock:
                task = self._tasks.pop(phase_name, None)
                if self._bar is not None and task is not None:
                    self._bar.remove_task(task)
                self._depth.pop(phase_name, None)

    return _ProgressMonitor()
