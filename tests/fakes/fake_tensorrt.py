"""A small fake ``tensorrt`` for CPU tests: one class per API object, enforcing what the real library does.

``make_fake_tensorrt(state)`` returns a module whose public names are a subset of the real bindings'
names for the emulated version (checked by tests/engines/test_tensorrt_api_names.py): in "11.x" mode
``BuilderFlag.FP16`` and ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` do not exist.

A "plan" is the ONNX model plus a JSON header (TensorRT version, GPU, profile, I/O); the fake engine
runs that ONNX with onnxruntime when its stream work runs (see :mod:`fake_cudart`: at synchronize), so
outputs are real numbers, read from and written to fake device memory at the addresses bound.

Enforced (a break is logged through the TensorRT logger, returns the real failure value, AND is
recorded in ``state.violations``; the fixtures fail any test that leaves violations it did not expect):
* Builder/Runtime need a CUDA device; ILogger/IProgressMonitor subclasses must call the base ``__init__``;
* network flags must be known bits; strongly typed networks reject precision flags, and
  WEIGHT_STREAMING needs one; ``set_shape`` needs min <= opt <= max; dynamic inputs need a profile;
* ``create_timing_cache`` of bytes that are not a cache returns None (and ``set_timing_cache(None)``
  raises TypeError, as pybind11 does); a cache from another GPU is refused unless ``ignore_mismatch``;
* the builder calls the progress monitor from a worker thread while the calling thread is blocked
  in C++ (Python signal handlers cannot run in it until the build returns);
* ``deserialize_cuda_engine`` refuses plans of another TensorRT version or compute capability;
* ``set_tensor_address`` of a pointer not 256-byte aligned returns False; ``infer_shapes`` raises
  RuntimeError when two inputs give one named axis different sizes;
* ``set_input_shape`` outside the profile returns False; ``execute_async_v3`` needs every shape set,
  every address bound to device memory big enough, a live stream handle (an int), and no CUDA error
  pending (see :mod:`fake_cudart`);
* the first enqueue at new shapes sets up resources (it allocates): during a stream capture that
  invalidates the capture; a CUDA graph replays only with the shapes it was captured with, and only
  while the context has enqueued nothing at other shapes since (TensorRT re-plans at a shape change);
* ``weight_streaming_budget_v2`` only on weight-streaming engines, before contexts exist; their enqueue is
  synchronous, so one during a stream capture invalidates it;
* one logger per process (TensorRT keeps a single logger pointer): a second logger is a violation;
* TF32 is on by default (``clear_flag`` turns it off); the plan header records it;
* the parser refuses what the emulated version's ONNX parser refuses (:mod:`eeg2img_deploy.engines.trt_rules`: operators,
  data types, uint8 inside the graph, attributes, constant inputs), one ``ParserError`` per finding.
"""

from __future__ import annotations

import ctypes
import enum
import json
import signal
import struct
import threading
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eeg2img_deploy.engines.trt_rules import check_model, parse_version

from .fake_cudart import GpuState, Op

MAGIC = b"FAKEPLAN"
PRECISION_FLAGS = ("FP16", "BF16", "INT8", "FP8")


@dataclass
class TrtState:
    version: str = "10.3.0"
    gpu: GpuState = field(default_factory=GpuState)
    calls: list[tuple[str, tuple]] = field(default_factory=list)
    build_steps: int = 4  # steps reported to the progress monitor per phase
    on_step: Any = None  # callable(step) run inside each build step (a test's "Ctrl-C")
    step_seconds: float = 0.0  # how long each build step takes
    plans_built: int = 0
    monitor_threads: set[str] = field(default_factory=set)
    logger: Any = None  # the first logger handed to TensorRT: the process's one logger

    @property
    def violations(self) -> list[str]:
        return self.gpu.violations

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))

    def violate(self, msg: str) -> None:
        self.gpu.violate(msg)

    def need_gpu(self, what: str) -> None:
        g = self.gpu
        if g.no_driver or g.driver_too_old or g.device_count == 0:
            self.violate(f"{what} used on a machine without a CUDA device")
            raise RuntimeError(f"[fake TensorRT] {what}: CUDA initialization failure with error 100 (simulated crash)")


Severity = enum.IntEnum("Severity", [("INTERNAL_ERROR", 0), ("ERROR", 1), ("WARNING", 2), ("INFO", 3), ("VERBOSE", 4)])
DataType = enum.IntEnum("DataType", [("FLOAT", 0), ("HALF", 1), ("INT8", 2), ("INT32", 3), ("BOOL", 4), ("UINT8", 5), ("BF16", 7), ("INT64", 8)])  # fmt: skip
TensorIOMode = enum.IntEnum("TensorIOMode", [("NONE", 0), ("INPUT", 1), ("OUTPUT", 2)])
MemoryPoolType = enum.IntEnum("MemoryPoolType", [("WORKSPACE", 0)])
NP_OF = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32,
         DataType.BOOL: np.bool_, DataType.UINT8: np.uint8, DataType.INT64: np.int64}  # fmt: skip
ONNX_TO_TRT = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32, 9: DataType.BOOL,
               2: DataType.UINT8, 7: DataType.INT64}  # fmt: skip


def nptype(trt_type: Any) -> Any:
    return NP_OF[DataType(int(trt_type))]


def _volume(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


# ---- logging and progress ----------------------------------------------------------------------------
class ILogger:
    Severity = Severity

    def __init__(self) -> None:
        self._trt_base_init = True

    def log(self, severity: Any, msg: str) -> None:
        raise NotImplementedError


class Logger(ILogger):
    def __init__(self, min_severity: Any = Severity.WARNING) -> None:
        super().__init__()
        self.min_severity = min_severity
        self.messages: list[tuple[Any, str]] = []

    def log(self, severity: Any, msg: str) -> None:
        self.messages.append((severity, msg))


class IProgressMonitor:
    def __init__(self) -> None:
        self._trt_base_init = True


def _check_logger(st: TrtState, logger: Any, who: str) -> None:
    if not isinstance(logger, ILogger) or not getattr(logger, "_trt_base_init", False):
        st.violate(f"{who} got a logger that is not an initialised trt.ILogger")
        raise TypeError(f"{who}(): incompatible constructor arguments (logger)")
    if st.logger is None:
        st.logger = logger
    elif logger is not st.logger:  # TensorRT keeps one logger pointer for the process
        st.violate(f"{who} got a second TensorRT logger: every Builder, Runtime and parser must use the same one")


def _error(logger: Any, msg: str) -> None:
    logger.log(Severity.ERROR, msg)


# ---- the network and its parser ----------------------------------------------------------------------
class ITensor:
    def __init__(self, name: str, shape: tuple[int, ...], dtype: Any) -> None:
        self.name, self.shape, self.dtype = name, shape, dtype


class INetworkDefinition:
    def __init__(self, flags: int, strongly_typed: bool) -> None:
        self._flags, self._strongly_typed = flags, strongly_typed
        self._inputs: list[ITensor] = []
        self._outputs: list[ITensor] = []
        self._model: bytes | None = None

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    def get_input(self, index: int) -> ITensor:
        return self._inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]


class ParserError:
    def __init__(self, text: str) -> None:
        self._text = text

    def desc(self) -> str:
        return self._text

    def __str__(self) -> str:
        return f"In node -1 (parse): {self._text}"


class OnnxParser:
    _st: TrtState

    def __init__(self, network: INetworkDefinition, logger: Any) -> None:
        _check_logger(self._st, logger, "OnnxParser")
        self._st.record("OnnxParser")
        self._network, self._errors = network, []

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> ParserError:
        return self._errors[index]

    def parse_from_file(self, model: str) -> bool:
        import onnx

        self._st.record("OnnxParser.parse_from_file", model)
        try:
            proto = onnx.load(model)  # loads external data relative to the file, as TensorRT does
            onnx.checker.check_model(proto)
        except Exception as e:
            self._errors.append(ParserError(f"failed to load {model}: {e}"))
            return False
        # TensorRT's parser rules as the toolkit writes them down: a graph the real parser refuses fails here too
        refused = [v for v in check_model(proto, Path(model).name, parse_version(self._st.version)) if v.refused]
        if refused:
            self._errors.extend(ParserError(f"{v.where}: {v.rule}: {v.message}") for v in refused)
            return False

        def tensor(vi: Any) -> ITensor:
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim)
            return ITensor(vi.name, dims, ONNX_TO_TRT[vi.type.tensor_type.elem_type])

        init = {i.name for i in proto.graph.initializer}
        self._network._inputs = [tensor(vi) for vi in proto.graph.input if vi.name not in init]
        self._network._outputs = [tensor(vi) for vi in proto.graph.output]
        self._network._model = proto.SerializeToString()
        return True


# ---- building ------------------------------------------------------------------------------------------
class IOptimizationProfile:
    def __init__(self, st: TrtState) -> None:
        self._st = st
        self._shapes: dict[str, tuple[tuple[int, ...], ...]] = {}
        self._valid = True

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:
        lo, mid, hi = (tuple(int(d) for d in s) for s in (min, opt, max))
        if not (len(lo) == len(mid) == len(hi)):
            self._st.violate(f"set_shape({input!r}): min/opt/max of different ranks {lo} {mid} {hi}")
            self._valid = False
        elif any(a < 0 or a > b or b > c for a, b, c in zip(lo, mid, hi)):
            self._st.violate(f"set_shape({input!r}): needs 0 <= min <= opt <= max per dim, got {lo} {mid} {hi}")
            self._valid = False
        self._shapes[input] = (lo, mid, hi)

    def get_shape(self, input: str) -> list:
        return [list(s) for s in self._shapes[input]]


class IHostMemory(bytes):
    @property
    def nbytes(self) -> int:
        return len(self)


class ITimingCache:
    def __init__(self, entries: dict[str, Any], device: list[Any]) -> None:
        self._entries, self._device = entries, device

    def serialize(self) -> IHostMemory:
        return IHostMemory(b"FAKETC1" + json.dumps({"device": self._device, "entries": self._entries}).encode())


class IBuilderConfig:
    def __init__(self, st: TrtState, logger: Any, flag_type: type) -> None:
        self._st, self._logger, self._flag_type = st, logger, flag_type
        self._level = 3
        self._pools: dict[Any, int] = {}
        self._flags: set[Any] = {flag_type.TF32}  # TensorRT enables TF32 by default
        self._profiles: list[IOptimizationProfile] = []
        self._cache: ITimingCache | None = None
        self._monitor: Any = None

    def _device_id(self) -> list[Any]:
        return [list(self._st.gpu.compute_capability), self._st.gpu.name]

    @property
    def builder_optimization_level(self) -> int:
        return self._level

    @builder_optimization_level.setter
    def builder_optimization_level(self, value: int) -> None:
        if not isinstance(value, int) or not 0 <= value <= 5:
            self._st.violate(f"builder_optimization_level must be an int in 0..5, got {value!r}")
            raise ValueError("builder_optimization_level out of range")
        self._level = value

    def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
        if not isinstance(pool, MemoryPoolType) or not isinstance(pool_size, int) or pool_size < 0:
            self._st.violate(f"set_memory_pool_limit({pool!r}, {pool_size!r})")
            raise TypeError("set_memory_pool_limit(): incompatible function arguments")
        self._pools[pool] = pool_size

    def get_memory_pool_limit(self, pool: Any) -> int:
        return self._pools.get(pool, self._st.gpu.total_bytes)

    def set_flag(self, flag: Any) -> None:
        if not isinstance(flag, self._flag_type):
            self._st.violate(f"set_flag({flag!r}) is not a BuilderFlag of TensorRT {self._st.version}")
            raise TypeError("set_flag(): incompatible function arguments")
        self._flags.add(flag)

    def clear_flag(self, flag: Any) -> None:
        if not isinstance(flag, self._flag_type):
            self._st.violate(f"clear_flag({flag!r}) is not a BuilderFlag of TensorRT {self._st.version}")
            raise TypeError("clear_flag(): incompatible function arguments")
        self._flags.discard(flag)

    def get_flag(self, flag: Any) -> bool:
        return flag in self._flags

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        if not profile._valid or not profile._shapes:
            _error(self._logger, "IBuilderConfig::addOptimizationProfile: Error Code 3: invalid profile")
            return -1
        self._profiles.append(profile)
        return len(self._profiles) - 1

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache | None:
        data = bytes(serialized_timing_cache)
        if not data:
            return ITimingCache({}, self._device_id())
        try:
            assert data.startswith(b"FAKETC1")
            blob = json.loads(data[7:])
        except (AssertionError, ValueError):
            _error(self._logger, "Error Code 1: Serialization (timing cache: magic tag does not match)")
            return None
        return ITimingCache(blob["entries"], blob["device"])

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        if not isinstance(cache, ITimingCache):
            raise TypeError("set_timing_cache(): incompatible function arguments")
        if cache._device != self._device_id() and not ignore_mismatch:
            _error(self._logger, "timing cache was created on a different device")
            return False
        self._cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self._cache

    @property
    def progress_monitor(self) -> Any:
        return self._monitor

    @progress_monitor.setter
    def progress_monitor(self, monitor: Any) -> None:
        if not isinstance(monitor, IProgressMonitor) or not getattr(monitor, "_trt_base_init", False):
            self._st.violate("progress_monitor must be a trt.IProgressMonitor whose __init__ was called")
            raise TypeError("progress_monitor: incompatible value")
        self._monitor = monitor


class Builder:
    _st: TrtState
    _flag_type: type
    _net_flag_type: type

    def __init__(self, logger: Any) -> None:
        _check_logger(self._st, logger, "Builder")
        self._st.record("Builder")
        self._st.need_gpu("trt.Builder")
        self._logger = logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        self._st.record("Builder.create_network", flags)
        known = 0
        for f in self._net_flag_type:
            known |= 1 << int(f)
        if flags & ~known:
            self._st.violate(f"create_network flags {flags:#x} has bits TensorRT {self._st.version} does not define")
        strongly = bool(flags & (1 << int(self._net_flag_type.STRONGLY_TYPED)))
        return INetworkDefinition(flags, strongly)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig(self._st, self._logger, self._flag_type)

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile(self._st)

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> IHostMemory | None:
        st = self._st
        st.record("Builder.build_serialized_network")
        error = self._check(network, config)
        if error:
            st.violate(error)
            _error(self._logger, error)
            return None
        if not self._run_build_thread(config.progress_monitor):
            _error(self._logger, "Builder::buildSerializedNetwork: Error Code 2: Internal Error (build cancelled)")
            return None
        profiles = {k: [list(s) for s in v] for k, v in config._profiles[0]._shapes.items()} if config._profiles else {}
        header = {
            "version": st.version,
            "compute_capability": list(st.gpu.compute_capability),
            "profiles": profiles,
            "inputs": [[t.name, int(t.dtype), list(t.shape)] for t in network._inputs],
            "outputs": [[t.name, int(t.dtype), list(t.shape)] for t in network._outputs],
            "weight_streaming": "WEIGHT_STREAMING" in {f.name for f in config._flags},
            "tf32": "TF32" in {f.name for f in config._flags},
        }
        if config._cache is not None:
            config._cache._entries[str(len(config._cache._entries))] = "tactic"
        st.plans_built += 1
        head = json.dumps(header).encode()
        return IHostMemory(MAGIC + struct.pack("<I", len(head)) + head + network._model)

    def _check(self, network: INetworkDefinition, config: IBuilderConfig) -> str | None:
        if network._model is None:
            return "build_serialized_network: the network is empty (was the ONNX parsed?)"
        precision = sorted(f.name for f in config._flags if f.name in PRECISION_FLAGS)
        if network._strongly_typed and precision:
            return f"precision flags {precision} are not allowed on a strongly typed network"
        if "WEIGHT_STREAMING" in {f.name for f in config._flags} and not network._strongly_typed:
            return "WEIGHT_STREAMING requires a strongly typed network"
        profile = config._profiles[0]._shapes if config._profiles else {}
        for t in network._inputs:
            if all(d >= 0 for d in t.shape):
                continue
            if t.name not in profile:
                return f"network input {t.name!r} is dynamic {t.shape} but no optimization profile covers it"
            for s in profile[t.name]:
                if len(s) != len(t.shape) or any(d >= 0 and d != v for d, v in zip(t.shape, s)):
                    return f"profile shape {s} for {t.name!r} does not match the network's {t.shape}"
        return None

    def _run_build_thread(self, monitor: Any) -> bool:
        """The build runs in C++ on a worker thread that calls the monitor; this thread waits in C++, so
        SIGINT is held back here (a Python signal handler cannot run on it until the build returns)."""
        result: list[bool] = []
        st = self._st

        def build() -> None:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
            result.append(self._report_progress(monitor))

        worker = threading.Thread(target=build, name="fake-trt-builder")
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            worker.start()
            worker.join()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        st.record("Builder.build_thread_done")
        return result[0]

    def _report_progress(self, monitor: Any) -> bool:
        st = self._st
        if monitor is None:
            return True
        st.monitor_threads.add(threading.current_thread().name)
        monitor.phase_start("Building engine", None, 2)
        for outer in range(2):
            monitor.phase_start("Tactic selection", "Building engine", st.build_steps)
            for step in range(st.build_steps):
                if st.on_step is not None:
                    st.on_step(step)
                time.sleep(st.step_seconds)
                if not monitor.step_complete("Tactic selection", step):
                    monitor.phase_finish("Tactic selection")
                    monitor.phase_finish("Building engine")
                    return False
            monitor.phase_finish("Tactic selection")
            if not monitor.step_complete("Building engine", outer):
                monitor.phase_finish("Building engine")
                return False
        monitor.phase_finish("Building engine")
        return True


# ---- running -------------------------------------------------------------------------------------------
class ICudaEngine:
    def __init__(self, st: TrtState, header: dict[str, Any], model: bytes, logger: Any) -> None:
        import onnx
        import onnxruntime as ort

        self._st, self._h, self._logger = st, header, logger
        self._io = [(n, TensorIOMode.INPUT, DataType(d), tuple(s)) for n, d, s in header["inputs"]]
        self._io += [(n, TensorIOMode.OUTPUT, DataType(d), tuple(s)) for n, d, s in header["outputs"]]
        self._session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        graph = onnx.load_from_string(model).graph
        dims = lambda vi: [d.dim_param if not d.HasField("dim_value") else d.dim_value for d in vi.type.tensor_type.shape.dim]
        self._out_dims = {o.name: dims(o) for o in graph.output}
        self._in_dims = {i.name: dims(i) for i in graph.input}
        self._contexts = 0
        self._budget: int | None = None

    def _find(self, name: str) -> tuple:
        for t in self._io:
            if t[0] == name:
                return t
        self._st.violate(f"{name!r} is not an I/O tensor of this engine")
        raise KeyError(name)

    @property
    def num_io_tensors(self) -> int:
        return len(self._io)

    @property
    def num_optimization_profiles(self) -> int:
        return 1

    def get_tensor_name(self, index: int) -> str:
        return self._io[index][0]

    def get_tensor_mode(self, name: str) -> Any:
        return self._find(name)[1]

    def get_tensor_dtype(self, name: str) -> Any:
        return self._find(name)[2]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self._find(name)[3]

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list:
        dims = self._find(name)[3]
        return self._h["profiles"].get(name, [list(dims)] * 3)

    @property
    def streamable_weights_size(self) -> int:
        return 1 << 20 if self._h["weight_streaming"] else 0

    @property
    def weight_streaming_budget_v2(self) -> int:
        return self._budget if self._budget is not None else self.streamable_weights_size

    @weight_streaming_budget_v2.setter
    def weight_streaming_budget_v2(self, budget: int) -> None:
        if not self._h["weight_streaming"]:
            self._st.violate("weight_streaming_budget_v2 set on an engine built without BuilderFlag.WEIGHT_STREAMING")
        if self._contexts:
            self._st.violate("weight_streaming_budget_v2 changed after execution contexts were created")
        self._budget = int(budget)

    def create_execution_context(self) -> IExecutionContext:
        self._st.record("ICudaEngine.create_execution_context")
        self._contexts += 1
        return IExecutionContext(self)


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self._e, self._st = engine, engine._st
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._addresses: dict[str, int] = {}
        self._ready_shapes: dict[str, tuple[int, ...]] | None = None  # resources set up for these
        self._generation = 0  # bumped by every eager enqueue at other shapes than the last one

    def _inputs(self) -> list[tuple]:
        return [t for t in self._e._io if t[1] == TensorIOMode.INPUT]

    def set_input_shape(self, name: str, shape: Any) -> bool:
        self._st.record("IExecutionContext.set_input_shape", name, tuple(shape))
        _, mode, _, dims = self._e._find(name)
        shape = tuple(int(d) for d in shape)
        if mode != TensorIOMode.INPUT:
            self._st.violate(f"set_input_shape on output {name!r}")
            return False
        if len(shape) != len(dims) or any(d >= 0 and d != s for d, s in zip(dims, shape)):
            _error(self._e._logger, f"set_input_shape: {name!r} {shape} does not match the engine's {dims}")
            return False
        if name in self._e._h["profiles"]:
            lo, _, hi = self._e._h["profiles"][name]
            if any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
                _error(self._e._logger, f"set_input_shape: {name!r} {shape} is outside the profile {lo}..{hi}")
                return False
        self._shapes[name] = shape
        return True

    @property
    def all_binding_shapes_specified(self) -> bool:  # exists in the bindings; documented not to work by name
        self._st.violate("all_binding_shapes_specified does not work with name-based shapes (use infer_shapes)")
        return False

    def infer_shapes(self) -> list[str]:
        self._st.record("IExecutionContext.infer_shapes")
        return self._unresolved()

    def _unresolved(self) -> list[str]:
        sizes: dict[str, tuple[str, int]] = {}  # an axis named alike in two inputs must agree (inferShapes: -1)
        for name, shape in self._shapes.items():
            for d, n in zip(self._e._in_dims[name], shape):
                if isinstance(d, str) and d and sizes.setdefault(d, (name, n))[1] != n:
                    _error(self._e._logger, f"IExecutionContext::inferShapes: Error Code 7: {d!r} is {sizes[d][1]} in "
                                            f"{sizes[d][0]!r} and {n} in {name!r}")  # fmt: skip
                    raise RuntimeError("infer_shapes error code: -1")  # what the binding raises
        return [t[0] for t in self._inputs() if t[0] not in self._shapes and any(d < 0 for d in t[3])]

    def _input_shape(self, name: str) -> tuple[int, ...]:
        return self._shapes.get(name, self._e._find(name)[3])

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        _, mode, _, dims = self._e._find(name)
        if mode == TensorIOMode.INPUT:
            return self._input_shape(name)
        if self._unresolved():
            return dims
        sizes: dict[str, int] = {}
        for iname, idims in self._e._in_dims.items():
            for d, s in zip(idims, self._input_shape(iname)):
                if isinstance(d, str) and d:
                    sizes[d] = s
        out = self._e._out_dims[name]
        if all(isinstance(d, int) or d in sizes for d in out):
            return tuple(d if isinstance(d, int) else sizes[d] for d in out)
        feeds = {t[0]: np.zeros(self._input_shape(t[0]), NP_OF[t[2]]) for t in self._inputs()}
        return tuple(self._e._session.run([name], feeds)[0].shape)

    def set_tensor_address(self, name: str, memory: int) -> bool:
        self._e._find(name)
        if not isinstance(memory, int):
            self._st.violate(f"set_tensor_address({name!r}) needs an int pointer, got {type(memory).__name__}")
            return False
        if memory % 256:  # NvInferRuntime.h: "The pointer must have at least 256-byte alignment."
            _error(self._e._logger, f"IExecutionContext::setTensorAddress: {name!r} address {memory:#x} is not 256-byte aligned")
            return False
        self._addresses[name] = memory
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        st = self._st
        st.record("IExecutionContext.execute_async_v3", stream_handle)
        problem = self._precondition_problem(stream_handle)
        if problem:
            st.violate(f"execute_async_v3: {problem}")
            _error(self._e._logger, f"IExecutionContext::enqueueV3: Error Code 3: API Usage Error ({problem})")
            return False
        stream = st.gpu.streams[stream_handle]
        if self._e._h["weight_streaming"] and stream.capture is not None:  # its enqueue is synchronous
            stream.invalidate("execute_async_v3 of a weight-streaming engine during stream capture (it synchronizes)")
        shapes = {t[0]: self.get_tensor_shape(t[0]) for t in self._e._io}
        inputs = {n: s for n, s in shapes.items() if n in dict(self._shapes)}
        if stream.capture is not None and inputs != self._ready_shapes:
            # the first enqueue at new shapes allocates and synchronizes: not capturable
            stream.invalidate("execute_async_v3 at new shapes during stream capture (it allocates; warm up first)")
        elif stream.capture is None:
            self._generation += inputs != self._ready_shapes
            self._ready_shapes = dict(inputs)
        addresses = dict(self._addresses)
        captured, generation = dict(self._shapes), self._generation

        def kernel() -> None:
            st.gpu.kernel_launches += 1
            feeds = {}
            for name, _, dtype, _ in self._inputs():
                dt = np.dtype(NP_OF[dtype])
                n = _volume(shapes[name]) * dt.itemsize
                if not st.gpu.is_device(addresses[name], n):
                    st.violate(f"kernel reads {name!r} from freed or too small memory")
                    return
                raw = (ctypes.c_char * n).from_address(addresses[name])
                feeds[name] = np.frombuffer(raw, dtype=dt).reshape(shapes[name]).copy()
            names = [t[0] for t in self._e._io if t[1] == TensorIOMode.OUTPUT]
            for name, value in zip(names, self._e._session.run(names, feeds)):
                value = np.ascontiguousarray(value)
                if not st.gpu.is_device(addresses[name], value.nbytes):
                    st.violate(f"kernel writes {name!r} to freed or too small memory")
                    return
                ctypes.memmove(addresses[name], value.ctypes.data, value.nbytes)

        def check() -> str | None:  # a graph replays the captured shapes and the context's plan for them
            if self._shapes != captured:
                return f"graph captured at {captured} replayed while the context's shapes are {self._shapes}"
            if self._generation != generation:
                return f"graph captured at {captured} replayed after the context ran at other shapes (recapture)"
            return None

        stream.enqueue(Op("enqueueV3", kernel, check))
        if self._e._h["weight_streaming"] and stream.capture is None:
            stream.drain()  # synchronous: it returns after the work (and the weights' streaming) is done
        return True

    def _precondition_problem(self, stream_handle: Any) -> str | None:
        if not isinstance(stream_handle, int):
            return f"stream_handle must be an int, got {type(stream_handle).__name__}"
        if stream_handle not in self._st.gpu.streams:
            return "stream_handle is not a live CUDA stream"
        if self._st.gpu.last_error:  # TensorRT checks its kernel launches with cudaGetLastError
            return f"a CUDA error is pending from an earlier call (error {self._st.gpu.last_error}; clear it with cudaGetLastError)"
        missing = self._unresolved()
        if missing:
            return f"input shapes not set for {missing} (call set_input_shape first)"
        for name, _, dtype, _ in self._e._io:
            if name not in self._addresses:
                return f"no address set for {name!r} (call set_tensor_address)"
            nbytes = _volume(self.get_tensor_shape(name)) * np.dtype(NP_OF[dtype]).itemsize
            if not self._st.gpu.is_device(self._addresses[name], nbytes):
                return f"the address of {name!r} is not device memory of {nbytes} bytes"
        return None


class Runtime:
    _st: TrtState

    def __init__(self, logger: Any) -> None:
        _check_logger(self._st, logger, "Runtime")
        self._st.record("Runtime")
        self._logger = logger  # like the real one: created fine without a GPU

    def deserialize_cuda_engine(self, serialized_engine: Any) -> ICudaEngine | None:
        st = self._st
        st.record("Runtime.deserialize_cuda_engine")
        st.need_gpu("Runtime.deserialize_cuda_engine")
        data = bytes(serialized_engine)
        if not data.startswith(MAGIC):
            _error(self._logger, "Error Code 1: Serialization (magic tag does not match)")
            return None
        (n,) = struct.unpack("<I", data[8:12])
        header, model = json.loads(data[12 : 12 + n]), data[12 + n :]
        if header["version"] != st.version:
            _error(self._logger, f"The engine plan file is not compatible with this version of TensorRT, expecting library version {st.version} got {header['version']}")  # fmt: skip
            return None
        if tuple(header["compute_capability"]) != tuple(st.gpu.compute_capability):
            _error(self._logger, "The engine plan file is generated on an incompatible device")
            return None
        return ICudaEngine(st, header, model, self._logger)


# ---- the module ----------------------------------------------------------------------------------------
def make_fake_tensorrt(state: TrtState) -> types.ModuleType:
    v10 = state.major < 11
    m = types.ModuleType("tensorrt")
    m.__version__ = state.version
    m._state = state
    BuilderFlag = enum.IntEnum("BuilderFlag", [(f, i) for i, f in enumerate(
        (["FP16", "BF16", "INT8", "FP8"] if v10 else []) + ["TF32", "SPARSE_WEIGHTS", "STRIP_PLAN", "WEIGHT_STREAMING"])])  # fmt: skip
    # STRONGLY_TYPED keeps bit 1 in both; 11.x has no EXPLICIT_BATCH member
    NetworkDefinitionCreationFlag = enum.IntEnum(
        "NetworkDefinitionCreationFlag", ([("EXPLICIT_BATCH", 0)] if v10 else []) + [("STRONGLY_TYPED", 1)]
    )
    bound = {"_st": state, "_flag_type": BuilderFlag, "_net_flag_type": NetworkDefinitionCreationFlag}
    for cls in (Builder, OnnxParser, Runtime):
        setattr(m, cls.__name__, type(cls.__name__, (cls,), bound))
    for obj in (
        DataType, TensorIOMode, MemoryPoolType, BuilderFlag, NetworkDefinitionCreationFlag, nptype, ILogger, Logger,
        IProgressMonitor, ITensor, INetworkDefinition, ParserError, IOptimizationProfile, ITimingCache, IHostMemory,
        IBuilderConfig, ICudaEngine, IExecutionContext,
    ):  # fmt: skip
        setattr(m, obj.__name__, obj)
    # trt.float32 etc., as the real package aliases them
    m.float32, m.float16, m.int32, m.int64, m.int8, m.bool, m.uint8 = (
        DataType.FLOAT, DataType.HALF, DataType.INT32, DataType.INT64, DataType.INT8, DataType.BOOL, DataType.UINT8,
    )
    return m


def read_plan_header(path: str | Path) -> dict[str, Any]:
    data = Path(path).read_bytes()
    assert data.startswith(MAGIC), f"{path} is not a fake plan"
    (n,) = struct.unpack("<I", data[8:12])
    return json.loads(data[12 : 12 + n])
