"""A fake onnxruntime-gpu over the real CPU onnxruntime: GPU providers that "start" or not, and I/O binding
that counts host<->device copies.

Sessions compute with the real CPU provider; what is faked is what a GPU build would report and copy:
``get_available_providers``, the providers a session really starts (``startable``: a TensorRT EP whose
libraries are missing falls back to the next one, as onnxruntime-gpu does), the provider options each
session got, and ``IOBinding``/``OrtValue`` with device placement. ``state.copies`` counts "H2D"/"D2H".

A session on a GPU provider asked to save its optimized model (``optimized_model_filepath``) saves it after
placing the nodes, as onnxruntime-gpu does: with the Memcpy nodes the placement inserted (here a
``MemcpyToHost`` before each graph output). A GPU-provider session refuses a model holding them, as known
onnxruntime-gpu versions do ("Failed to find kernel for MemcpyToHost", microsoft/onnxruntime#11348).
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class OrtState:
    available: list[str] = field(default_factory=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    startable: set[str] = field(default_factory=lambda: {"CUDAExecutionProvider", "CPUExecutionProvider"})
    sessions: list[tuple[str, list]] = field(default_factory=list)  # (model path, providers as passed)
    copies: list[str] = field(default_factory=list)
    preloads: list[int] = field(default_factory=list)  # len(sessions) when onnxruntime.preload_dlls() ran

    def count(self, kind: str) -> int:
        return self.copies.count(kind)


class OrtValue:
    def __init__(self, array: np.ndarray, device: str, state: OrtState) -> None:
        self._array, self._device, self._state = array, device, state

    @classmethod
    def ortvalue_from_numpy(cls, array: np.ndarray, device_type: str = "cpu", device_id: int = 0) -> OrtValue:
        state = _CURRENT["state"]
        if device_type == "cuda":
            state.copies.append("H2D")
        return cls(np.array(array, copy=True), device_type, state)

    def device_name(self) -> str:
        return self._device

    def shape(self) -> list[int]:  # a method on the real OrtValue
        return list(self._array.shape)

    def numpy(self) -> np.ndarray:
        if self._device == "cuda":
            self._state.copies.append("D2H")
        return self._array.copy()


class IOBinding:
    def __init__(self, session: InferenceSession) -> None:
        self._session, self._inputs, self._outputs = session, {}, {}
        self._results: list[OrtValue] = []

    def bind_cpu_input(self, name: str, array: np.ndarray) -> None:
        self._session._state.copies.append("H2D")  # copied to the device by run_with_iobinding
        self._inputs[name] = np.array(array, copy=True)

    def bind_ortvalue_input(self, name: str, value: OrtValue) -> None:
        if value._device != "cuda":
            self._session._state.copies.append("H2D")
        self._inputs[name] = value._array

    def bind_output(self, name: str, device_type: str = "cpu", device_id: int = 0, *args: Any) -> None:
        self._outputs[name] = device_type

    def _run(self) -> None:
        names = list(self._outputs)
        values = self._session._real.run(names, self._inputs)
        state = self._session._state
        self._results = []
        for name, value in zip(names, values):
            if self._outputs[name] == "cpu":
                state.copies.append("D2H")
            self._results.append(OrtValue(value, self._outputs[name], state))

    def get_outputs(self) -> list[OrtValue]:
        return self._results

    def copy_outputs_to_cpu(self) -> list[np.ndarray]:
        return [v.numpy() for v in self._results]


class InferenceSession:
    def __init__(self, path: str, sess_options: Any = None, providers: list | None = None, **kw: Any) -> None:
        real = _CURRENT["real"]
        self._state = _CURRENT["state"]
        self._state.sessions.append((str(path), list(providers or [])))
        names = [p[0] if isinstance(p, tuple) else p for p in providers or ["CPUExecutionProvider"]]
        self._active = [n for n in names if n in self._state.startable] or ["CPUExecutionProvider"]
        memcpy = _memcpy_nodes(path) if self._active[0] != "CPUExecutionProvider" else []
        if memcpy:
            raise RuntimeError(f"[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Failed to find kernel for MemcpyToHost(1) "
                               f"(node {memcpy[0]}). Kernel not found")
        self._real = real.InferenceSession(path, sess_options, providers=["CPUExecutionProvider"])
        saved = getattr(sess_options, "optimized_model_filepath", "")
        if saved and self._active[0] != "CPUExecutionProvider":
            _add_memcpy_nodes(saved)

    def get_providers(self) -> list[str]:
        return list(self._active)

    def get_inputs(self) -> list:
        return self._real.get_inputs()

    def get_outputs(self) -> list:
        return self._real.get_outputs()

    def run(self, names: list[str] | None, feeds: dict[str, Any]) -> list[np.ndarray]:
        return self._real.run(names, feeds)

    def io_binding(self) -> IOBinding:
        return IOBinding(self)

    def run_with_iobinding(self, binding: IOBinding, run_options: Any = None) -> None:
        binding._run()


def _memcpy_nodes(path: Any) -> list[str]:
    import onnx

    if isinstance(path, bytes):  # a serialized model (the fake TensorRT's plans): never saved by a GPU session
        return []
    return [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type.startswith("Memcpy")]


def _add_memcpy_nodes(path: str) -> None:
    """What a GPU placement leaves in a saved model: a MemcpyToHost node before each graph output."""
    import onnx

    model = onnx.load(path, load_external_data=False)
    g = model.graph
    for out in g.output:
        placed = f"{out.name}_on_device"
        for node in g.node:
            node.output[:] = [placed if o == out.name else o for o in node.output]
            node.input[:] = [placed if i == out.name else i for i in node.input]
        g.node.append(onnx.helper.make_node("MemcpyToHost", [placed], [out.name], name=f"Memcpy_{out.name}"))
    onnx.save(model, path)


_CURRENT: dict[str, Any] = {"state": OrtState(), "real": None}  # the installed fake's state, the real module


def install_fake_onnxruntime(monkeypatch: Any, **kw: Any) -> OrtState:
    """Replace ``onnxruntime`` for this test by the fake (SessionOptions etc. stay the real ones)."""
    import onnxruntime as real

    state = OrtState(**kw)
    monkeypatch.setitem(_CURRENT, "state", state)
    monkeypatch.setitem(_CURRENT, "real", real)
    m = types.ModuleType("onnxruntime")
    for name in ("SessionOptions", "GraphOptimizationLevel", "__version__"):
        setattr(m, name, getattr(real, name))
    m.get_available_providers = lambda: list(state.available)
    m.preload_dlls = lambda *a, **k: state.preloads.append(len(state.sessions))  # onnxruntime-gpu 1.21+
    m.InferenceSession, m.OrtValue, m.IOBinding = InferenceSession, OrtValue, IOBinding
    monkeypatch.setitem(sys.modules, "onnxruntime", m)
    return state
