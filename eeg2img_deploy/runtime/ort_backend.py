"""onnxruntime backend: one InferenceSession per stage on the CPU, CUDA or TensorRT execution provider.

onnxruntime-gpu quietly falls back to the CPU when its CUDA libraries are missing; here that is an
error unless the caller allowed the CPU, and then it is a loud warning.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, EngineError
from ..manifest import Artifact, TensorSpec

log = logging.getLogger(__name__)

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def _providers(device: str, trt_options: dict[str, Any] | None) -> list:
    if device not in PROVIDERS:
        raise ValueError(f"onnxruntime device must be one of {sorted(PROVIDERS)}, got {device!r}")
    names = PROVIDERS[device]
    return [(n, trt_options) if n == "TensorrtExecutionProvider" and trt_options else n for n in names]


class OrtStage:
    """A :class:`~.backend.StageSession` over one ONNX file."""

    def __init__(self, path: Path, artifact: Artifact, *, device: str = "cpu", allow_cpu_fallback: bool = False,
                 trt_options: dict[str, Any] | None = None, threads: int | None = None):
        import onnxruntime as ort

        self.artifact = artifact
        self.device = device
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        # Four sessions run one after another: a pool that spins after its call keeps a core busy while the
        # next session runs (the 50-step prior took 375 ms with spinning, 225 ms without, on 2 cores).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        wanted = _providers(device, trt_options)
        available = ort.get_available_providers()
        missing = device != "cpu" and PROVIDERS[device][0] not in available
        if missing:
            self._fallback(f"this onnxruntime has no {PROVIDERS[device][0]} (it has {available}): "
                           "install onnxruntime-gpu (`pip install 'eeg2img-deploy[gpu]'`) on a CUDA machine", allow_cpu_fallback)
            wanted = ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=wanted)
        except Exception as e:  # onnxruntime raises its own exception types
            raise EngineError(f"onnxruntime cannot load {path.name} ({artifact.stage}): {e}") from e
        active = self.session.get_providers()
        if device != "cpu" and not missing and active[0] != PROVIDERS[device][0]:  # one warning per stage
            self._fallback(f"onnxruntime could not start {PROVIDERS[device][0]} for {artifact.stage} (active: {active}); "
                           "check the CUDA/cuDNN libraries onnxruntime-gpu needs", allow_cpu_fallback)
        self._use_binding = active[0] != "CPUExecutionProvider"
        self._out_names = [t.name for t in artifact.outputs]

    @staticmethod
    def _fallback(message: str, allowed: bool) -> None:
        if not allowed:
            raise BackendUnavailableError(message + " (or pass --device cpu / allow_cpu_fallback=True)")
        log.warning("RUNNING ON THE CPU: %s", message)

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.artifact.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.artifact.outputs

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self._use_binding:
            return dict(zip(self._out_names, self.session.run(self._out_names, feeds)))
        # On a GPU provider, I/O binding copies inputs once and lets onnxruntime place outputs.
        binding = self.session.io_binding()
        for name, arr in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(arr))
        for name in self._out_names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return dict(zip(self._out_names, binding.copy_outputs_to_cpu()))

    def close(self) -> None:
        self.session = None


def time_call(fn, *args) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - t0) * 1e3
