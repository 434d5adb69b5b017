"""A small fake ``tensorrt`` module for CPU tests: it records calls and enforces the API's preconditions.

``make_fake_tensorrt(state)`` returns a module object whose public names are a subset of the real
bindings' names for the emulated version (checked by tests/engines/test_tensorrt_api_names.py): in
"11.x" mode ``BuilderFlag.FP16`` and ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` do not exist.

A "plan" is the ONNX model plus a JSON header (TensorRT version, GPU, profile, I/O); the fake
engine runs that ONNX with onnxruntime, so engine outputs are real numbers, read from and written to
the fake CUDA memory of :mod:`fake_cudart` at the addresses the code under test bound.

What the fake enforces (a break is logged through the TensorRT logger as the real library does,
returns the real failure value, AND is recorded in ``state.violations``; the fixtures fail any test
that leaves violations it did not expect):
* Builder/Runtime work only with a CUDA device (the real Runtime is created without one and crashes
  on deserialize); IProgressMonitor/ILogger subclasses must call the base ``__init__``;
* ``create_network`` flags must be known bits; strongly typed networks reject precision flags
  (FP16/BF16/INT8/FP8) and WEIGHT_STREAMING needs a strongly typed network;
* ``set_shape``: equal ranks, min <= opt <= max, sizes >= 0; every dynamic network input needs a
  profile whose static dims match the network; ``builder_optimization_level`` in 0..5;
* a timing cache from another GPU is refused unless ``ignore_mismatch``;
* ``deserialize_cuda_engine`` refuses plans of another TensorRT version or compute capability;
* ``set_input_shape`` outside the profile returns False; ``execute_async_v3`` needs every input
  shape set, every I/O address bound to device memory large enough, an int stream handle of a live
  stream; ``weight_streaming_budget_v2`` only on weight-streaming engines, before contexts exist.
"""

from __future__ import annotations

import ctypes
import enum
import json
import struct
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .fake_cudart import GpuState

MAGIC = b"FAKEPLAN"


@dataclass
class TrtState:
    version: str = "10.3.0"
    gpu: GpuState = field(default_factory=GpuState)
    calls: list[tuple[str, tuple]] = field(default_factory=list)
    build_steps: int = 4  # steps reported to the progress monitor per phase
    on_step: Any = None  # callable(step) run inside each build step (a test's "Ctrl-C")
    plans_built: int = 0

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


def _enum(name: str, members: list[str]) -> type[enum.IntEnum]:
    return enum.IntEnum(name, [(m, i) for i, m in enumerate(members)])


PRECISION_FLAGS = ("FP16", "BF16", "INT8", "FP8")


def make_fake_tensorrt(state: TrtState) -> types.ModuleType:
    import onnx
    import onnxruntime as ort

    v10 = state.major < 11
    m = types.ModuleType("tensorrt")
    m.__version__ = state.version
    m._state = state

    Severity = enum.IntEnum("Severity", [("INTERNAL_ERROR", 0), ("ERROR", 1), ("WARNING", 2), ("INFO", 3), ("VERBOSE", 4)])
    DataType = enum.IntEnum("DataType", [("FLOAT", 0), ("HALF", 1), ("INT8", 2), ("INT32", 3), ("BOOL", 4), ("UINT8", 5), ("BF16", 7), ("INT64", 8)])
    TensorIOMode = _enum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"])
    MemoryPoolType = _enum("MemoryPoolType", ["WORKSPACE"])
    BuilderFlag = _enum("BuilderFlag", (["FP16", "BF16", "INT8", "FP8"] if v10 else []) + ["TF32", "SPARSE_WEIGHTS", "STRIP_PLAN", "WEIGHT_STREAMING"])
    # STRONGLY_TYPED keeps bit 1 in both; 11.x has no EXPLICIT_BATCH member
    NetworkDefinitionCreationFlag = enum.IntEnum(
        "NetworkDefinitionCreationFlag", ([("EXPLICIT_BATCH", 0)] if v10 else []) + [("STRONGLY_TYPED", 1)]
    )

    np_of = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32,
             DataType.BOOL: np.bool_, DataType.UINT8: np.uint8, DataType.INT64: np.int64}  # fmt: skip
    onnx_to_trt = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32, 9: DataType.BOOL, 2: DataType.UINT8, 7: DataType.INT64}

    def nptype(trt_type: Any) -> Any:
        return np_of[DataType(int(trt_type))]

    def violate(msg: str) -> None:
        state.violations.append(msg)

    def need_gpu(what: str) -> None:
        if state.gpu.no_driver or state.gpu.device_count == 0:
            violate(f"{what} used on a machine without a CUDA device")
            raise RuntimeError(f"[fake TensorRT] {what}: CUDA initialization failure with error 100 (simulated crash)")

    def log_error(logger: Any, msg: str) -> None:
        logger.log(Severity.ERROR, msg)

    # ---- logging and progress ------------------------------------------------------------------------
    class ILogger:
        def __init__(self) -> None:
            self._trt_base_init = True

        def log(self, severity: Any, msg: str) -> None:
            raise NotImplementedError

    ILogger.Severity = Severity

    class Logger(ILogger):
        def __init__(self, min_severity: Any = Severity.WARNING) -> None:
            super().__init__()
            self.min_severity = min_severity
            self.messages: list[tuple[Any, str]] = []

        def log(self, severity: Any, msg: str) -> None:
            self.messages.append((severity, msg))

    Logger.Severity = Severity

    def check_logger(logger: Any, who: str) -> None:
        if not isinstance(logger, ILogger) or not getattr(logger, "_trt_base_init", False):
            violate(f"{who} got a logger that is not an initialised trt.ILogger")
            raise TypeError(f"{who}(): incompatible constructor arguments (logger)")

    class IProgressMonitor:
        def __init__(self) -> None:
            self._trt_base_init = True

    # ---- building ------------------------------------------------------------------------------------
    class ITensor:
        def __init__(self, name: str, shape: tuple[int, ...], dtype: Any) -> None:
            self.name, self.shape, self.dtype = name, shape, dtype

    class INetworkDefinition:
        def __init__(self, flags: int) -> None:
            self._flags = flags
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

        @property
        def _strongly_typed(self) -> bool:
            return bool(self._flags & (1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)))

    class ParserError:
        def __init__(self, text: str) -> None:
            self._text = text

        def desc(self) -> str:
            return self._text

        def __str__(self) -> str:
            return f"In node -1 (parse): {self._text}"

    def _tensor(vi: Any) -> ITensor:
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim)
        return ITensor(vi.name, dims, onnx_to_trt[vi.type.tensor_type.elem_type])

    class OnnxParser:
        def __init__(self, network: INetworkDefinition, logger: Any) -> None:
            check_logger(logger, "OnnxParser")
            state.record("OnnxParser")
            self._network, self._errors = network, []

        @property
        def num_errors(self) -> int:
            return len(self._errors)

        def get_error(self, index: int) -> ParserError:
            return self._errors[index]

        def parse_from_file(self, model: str) -> bool:
            state.record("OnnxParser.parse_from_file", model)
            try:
                proto = onnx.load(model)  # loads external data relative to the file, as TensorRT does
                onnx.checker.check_model(proto)
            except Exception as e:
                self._errors.append(ParserError(f"failed to load {model}: {e}"))
                return False
            init = {i.name for i in proto.graph.initializer}
            self._network._inputs = [_tensor(vi) for vi in proto.graph.input if vi.name not in init]
            self._network._outputs = [_tensor(vi) for vi in proto.graph.output]
            self._network._model = proto.SerializeToString()
            return True

    class IOptimizationProfile:
        def __init__(self) -> None:
            self._shapes: dict[str, tuple[tuple[int, ...], ...]] = {}
            self._valid = True

        def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:
            lo, mid, hi = (tuple(int(d) for d in s) for s in (min, opt, max))
            if not (len(lo) == len(mid) == len(hi)):
                violate(f"set_shape({input!r}): min/opt/max of different ranks {lo} {mid} {hi}")
                self._valid = False
            elif any(a < 0 or a > b or b > c for a, b, c in zip(lo, mid, hi)):
                violate(f"set_shape({input!r}): needs 0 <= min <= opt <= max per dim, got {lo} {mid} {hi}")
                self._valid = False
            self._shapes[input] = (lo, mid, hi)

        def get_shape(self, input: str) -> list:
            return [list(s) for s in self._shapes[input]]

    class ITimingCache:
        def __init__(self, entries: dict[str, Any], device: list[Any]) -> None:
            self._entries, self._device = entries, device

        def serialize(self) -> IHostMemory:
            return IHostMemory(b"FAKETC1" + json.dumps({"device": self._device, "entries": self._entries}).encode())

    class IHostMemory(bytes):
        @property
        def nbytes(self) -> int:
            return len(self)

    def _device_id() -> list[Any]:
        return [list(state.gpu.compute_capability), state.gpu.name]

    class IBuilderConfig:
        def __init__(self, logger: Any) -> None:
            self._logger = logger
            self._level = 3
            self._pools: dict[Any, int] = {}
            self._flags: set[Any] = set()
            self._profiles: list[IOptimizationProfile] = []
            self._cache: ITimingCache | None = None
            self._monitor: Any = None

        @property
        def builder_optimization_level(self) -> int:
            return self._level

        @builder_optimization_level.setter
        def builder_optimization_level(self, value: int) -> None:
            if not isinstance(value, int) or not 0 <= value <= 5:
                violate(f"builder_optimization_level must be an int in 0..5, got {value!r}")
                raise ValueError("builder_optimization_level out of range")
            self._level = value

        def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
            if not isinstance(pool, MemoryPoolType) or not isinstance(pool_size, int) or pool_size < 0:
                violate(f"set_memory_pool_limit({pool!r}, {pool_size!r})")
                raise TypeError("set_memory_pool_limit(): incompatible function arguments")
            self._pools[pool] = pool_size

        def get_memory_pool_limit(self, pool: Any) -> int:
            return self._pools.get(pool, state.gpu.total_bytes)

        def set_flag(self, flag: Any) -> None:
            if not isinstance(flag, BuilderFlag):
                violate(f"set_flag({flag!r}) is not a BuilderFlag of TensorRT {state.version}")
                raise TypeError("set_flag(): incompatible function arguments")
            self._flags.add(flag)

        def get_flag(self, flag: Any) -> bool:
            return flag in self._flags

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            if not profile._valid or not profile._shapes:
                log_error(self._logger, "IBuilderConfig::addOptimizationProfile: Error Code 3: invalid profile")
                return -1
            self._profiles.append(profile)
            return len(self._profiles) - 1

        def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
            data = bytes(serialized_timing_cache)
            if not data:
                return ITimingCache({}, _device_id())
            if not data.startswith(b"FAKETC1"):
                violate("create_timing_cache() got bytes that are not a serialized timing cache")
                raise RuntimeError("invalid timing cache")
            blob = json.loads(data[7:])
            return ITimingCache(blob["entries"], blob["device"])

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            if cache._device != _device_id() and not ignore_mismatch:
                log_error(self._logger, "timing cache was created on a different device")
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
                violate("progress_monitor must be a trt.IProgressMonitor whose __init__ was called")
                raise TypeError("progress_monitor: incompatible value")
            self._monitor = monitor

    class Builder:
        def __init__(self, logger: Any) -> None:
            check_logger(logger, "Builder")
            state.record("Builder")
            need_gpu("trt.Builder")
            self._logger = logger

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            state.record("Builder.create_network", flags)
            known = 0
            for f in NetworkDefinitionCreationFlag:
                known |= 1 << int(f)
            if flags & ~known:
                violate(f"create_network flags {flags:#x} has bits TensorRT {state.version} does not define")
            return INetworkDefinition(flags)

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig(self._logger)

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> IHostMemory | None:
            state.record("Builder.build_serialized_network")
            error = self._check(network, config)
            if error:
                violate(error)
                log_error(self._logger, error)
                return None
            if not self._report_progress(config.progress_monitor):
                log_error(self._logger, "Builder::buildSerializedNetwork: Error Code 2: Internal Error (build cancelled)")
                return None
            profiles = {}
            if config._profiles:
                profiles = {k: [list(s) for s in v] for k, v in config._profiles[0]._shapes.items()}
            header = {
                "version": state.version,
                "compute_capability": list(state.gpu.compute_capability),
                "profiles": profiles,
                "inputs": [[t.name, int(t.dtype), list(t.shape)] for t in network._inputs],
                "outputs": [[t.name, int(t.dtype), list(t.shape)] for t in network._outputs],
                "weight_streaming": BuilderFlag.WEIGHT_STREAMING in config._flags,
            }
            if config._cache is not None:
                config._cache._entries[str(len(config._cache._entries))] = "tactic"
            state.plans_built += 1
            head = json.dumps(header).encode()
            return IHostMemory(MAGIC + struct.pack("<I", len(head)) + head + network._model)

        def _check(self, network: INetworkDefinition, config: IBuilderConfig) -> str | None:
            if network._model is None:
                return "build_serialized_network: the network is empty (was the ONNX parsed?)"
            precision = sorted(f.name for f in config._flags if f.name in PRECISION_FLAGS)
            if network._strongly_typed and precision:
                return f"precision flags {precision} are not allowed on a strongly typed network"
            if BuilderFlag.WEIGHT_STREAMING in config._flags and not network._strongly_typed:
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

        def _report_progress(self, monitor: Any) -> bool:
            if monitor is None:
                return True
            monitor.phase_start("Building engine", None, 2)
            for outer in range(2):
                monitor.phase_start("Tactic selection", "Building engine", state.build_steps)
                for step in range(state.build_steps):
                    if state.on_step is not None:
                        state.on_step(step)
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

    # ---- running -------------------------------------------------------------------------------------
    class ICudaEngine:
        def __init__(self, header: dict[str, Any], model: bytes, logger: Any) -> None:
            self._h, self._logger = header, logger
            self._io = [(n, TensorIOMode.INPUT, DataType(d), tuple(s)) for n, d, s in header["inputs"]]
            self._io += [(n, TensorIOMode.OUTPUT, DataType(d), tuple(s)) for n, d, s in header["outputs"]]
            self._session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
            proto = onnx.load_from_string(model)
            self._out_dims = {
                o.name: [d.dim_param if not d.HasField("dim_value") else d.dim_value for d in o.type.tensor_type.shape.dim]
                for o in proto.graph.output
            }
            self._in_dims = {
                i.name: [d.dim_param if not d.HasField("dim_value") else d.dim_value for d in i.type.tensor_type.shape.dim]
                for i in proto.graph.input
            }
            self._contexts = 0
            self._budget: int | None = None

        def _find(self, name: str) -> tuple:
            for t in self._io:
                if t[0] == name:
                    return t
            violate(f"{name!r} is not an I/O tensor of this engine")
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
            return self._h["profiles"][name]

        @property
        def streamable_weights_size(self) -> int:
            return 1 << 20 if self._h["weight_streaming"] else 0

        @property
        def weight_streaming_budget_v2(self) -> int:
            return self._budget if self._budget is not None else self.streamable_weights_size

        @weight_streaming_budget_v2.setter
        def weight_streaming_budget_v2(self, budget: int) -> None:
            if not self._h["weight_streaming"]:
                violate("weight_streaming_budget_v2 set on an engine built without BuilderFlag.WEIGHT_STREAMING")
            if self._contexts:
                violate("weight_streaming_budget_v2 changed after execution contexts were created")
            self._budget = int(budget)

        def create_execution_context(self) -> IExecutionContext:
            state.record("ICudaEngine.create_execution_context")
            self._contexts += 1
            return IExecutionContext(self)

    class IExecutionContext:
        def __init__(self, engine: ICudaEngine) -> None:
            self._e = engine
            self._shapes: dict[str, tuple[int, ...]] = {}
            self._addresses: dict[str, int] = {}

        def _inputs(self) -> list[tuple]:
            return [t for t in self._e._io if t[1] == TensorIOMode.INPUT]

        def set_input_shape(self, name: str, shape: Any) -> bool:
            state.record("IExecutionContext.set_input_shape", name, tuple(shape))
            _, mode, _, dims = self._e._find(name)
            shape = tuple(int(d) for d in shape)
            if mode != TensorIOMode.INPUT:
                violate(f"set_input_shape on output {name!r}")
                return False
            if len(shape) != len(dims) or any(d >= 0 and d != s for d, s in zip(dims, shape)):
                log_error(self._e._logger, f"set_input_shape: {name!r} {shape} does not match the engine's {dims}")
                return False
            if name in self._e._h["profiles"]:
                lo, _, hi = self._e._h["profiles"][name]
                if any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
                    log_error(self._e._logger, f"set_input_shape: {name!r} {shape} is outside the profile {lo}..{hi}")
                    return False
            self._shapes[name] = shape
            return True

        @property
        def all_binding_shapes_specified(self) -> bool:
            return all(t[0] in self._shapes or all(d >= 0 for d in t[3]) for t in self._inputs())

        def infer_shapes(self) -> list[str]:
            return [t[0] for t in self._inputs() if t[0] not in self._shapes and any(d < 0 for d in t[3])]

        def _input_shape(self, name: str) -> tuple[int, ...]:
            return self._shapes.get(name, self._e._find(name)[3])

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            _, mode, _, dims = self._e._find(name)
            if mode == TensorIOMode.INPUT:
                return self._input_shape(name)
            if not self.all_binding_shapes_specified:
                return dims
            sizes: dict[str, int] = {}
            for iname, idims in self._e._in_dims.items():
                for d, s in zip(idims, self._input_shape(iname)):
                    if isinstance(d, str) and d:
                        sizes[d] = s
            out = self._e._out_dims[name]
            if all(isinstance(d, int) or d in sizes for d in out):
                return tuple(d if isinstance(d, int) else sizes[d] for d in out)
            feeds = {t[0]: np.zeros(self._input_shape(t[0]), np_of[t[2]]) for t in self._inputs()}
            return tuple(self._e._session.run([name], feeds)[0].shape)

        def set_tensor_address(self, name: str, memory: int) -> bool:
            self._e._find(name)
            if not isinstance(memory, int):
                violate(f"set_tensor_address({name!r}) needs an int pointer, got {type(memory).__name__}")
                return False
            self._addresses[name] = memory
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            state.record("IExecutionContext.execute_async_v3", stream_handle)
            problem = self._precondition_problem(stream_handle)
            if problem:
                violate(f"execute_async_v3: {problem}")
                log_error(self._e._logger, f"IExecutionContext::enqueueV3: Error Code 3: API Usage Error ({problem})")
                return False
            shapes = {t[0]: self.get_tensor_shape(t[0]) for t in self._e._io}
            addresses = dict(self._addresses)

            def kernel() -> None:
                state.gpu.kernel_launches += 1
                feeds = {}
                for name, _, dtype, _ in self._inputs():
                    dt = np.dtype(np_of[dtype])
                    n = int(np.prod(shapes[name], dtype=np.int64)) * dt.itemsize
                    raw = (ctypes.c_char * n).from_address(addresses[name])
                    feeds[name] = np.frombuffer(raw, dtype=dt).reshape(shapes[name]).copy()
                names = [t[0] for t in self._e._io if t[1] == TensorIOMode.OUTPUT]
                for name, value in zip(names, self._e._session.run(names, feeds)):
                    value = np.ascontiguousarray(value)
                    ctypes.memmove(addresses[name], value.ctypes.data, value.nbytes)

            state.gpu.launch(stream_handle, kernel)
            return True

        def _precondition_problem(self, stream_handle: Any) -> str | None:
            if not isinstance(stream_handle, int):
                return f"stream_handle must be an int, got {type(stream_handle).__name__}"
            if stream_handle not in state.gpu.streams:
                return "stream_handle is not a live CUDA stream"
            missing = self.infer_shapes()
            if missing:
                return f"input shapes not set for {missing} (call set_input_shape first)"
            for name, _, dtype, _ in self._e._io:
                if name not in self._addresses:
                    return f"no address set for {name!r} (call set_tensor_address)"
                nbytes = int(np.prod(self.get_tensor_shape(name), dtype=np.int64)) * np.dtype(np_of[dtype]).itemsize
                if not state.gpu.find(self._addresses[name], nbytes):
                    return f"the address of {name!r} is not device memory of {nbytes} bytes"
            return None

    class Runtime:
        def __init__(self, logger: Any) -> None:
            check_logger(logger, "Runtime")
            state.record("Runtime")
            self._logger = logger  # like the real one: created fine without a GPU

        def deserialize_cuda_engine(self, serialized_engine: Any) -> ICudaEngine | None:
            state.record("Runtime.deserialize_cuda_engine")
            need_gpu("Runtime.deserialize_cuda_engine")
            data = bytes(serialized_engine)
            if not data.startswith(MAGIC):
                log_error(self._logger, "Error Code 1: Serialization (magic tag does not match)")
                return None
            (n,) = struct.unpack("<I", data[8:12])
            header, model = json.loads(data[12 : 12 + n]), data[12 + n :]
            if header["version"] != state.version:
                log_error(self._logger, f"The engine plan file is not compatible with this version of TensorRT, expecting library version {state.version} got {header['version']}")
                return None
            if tuple(header["compute_capability"]) != tuple(state.gpu.compute_capability):
                log_error(self._logger, "The engine plan file is generated on an incompatible device")
                return None
            return ICudaEngine(header, model, self._logger)

    for obj in (
        Severity, DataType, TensorIOMode, MemoryPoolType, BuilderFlag, NetworkDefinitionCreationFlag, nptype,
        ILogger, Logger, IProgressMonitor, ITensor, INetworkDefinition, ParserError, OnnxParser,
        IOptimizationProfile, ITimingCache, IHostMemory, IBuilderConfig, Builder, ICudaEngine,
        IExecutionContext, Runtime,
    ):  # fmt: skip
        setattr(m, obj.__name__, obj)
    del m.Severity  # real TensorRT has it only as ILogger.Severity / Logger.Severity
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
