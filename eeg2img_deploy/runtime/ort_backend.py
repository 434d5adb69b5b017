"""onnxruntime backend: one InferenceSession per stage on the CPU, CUDA or TensorRT execution provider, opened
by :func:`~..onnxrt.open_session` (the provider checks and EP options the builder shares).

On a GPU provider the stage runs through I/O binding: host inputs are copied once, and outputs can
stay on the device as ``OrtValue``s that the next stage binds directly (no host round trip).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..manifest import Artifact
from ..onnxrt import import_onnxruntime, open_session
from .backend import ArtifactSpecs


class OrtStage(ArtifactSpecs):
    """A :class:`~.backend.StageSession` over one ONNX file."""

    def __init__(self, path: Path, artifact: Artifact, *, provider: str = "cpu", allow_cpu_fallback: bool = False,
                 trt_options: dict[str, Any] | None = None, threads: int | None = None):
        self.artifact = artifact
        self.session, self.provider, self.active = open_session(
            path, artifact, provider, allow_cpu_fallback=allow_cpu_fallback, trt_options=trt_options, threads=threads)
        self._on_gpu = self.active != "CPUExecutionProvider"
        self._out_names = [t.name for t in artifact.outputs]
        self._resident: dict[str, Any] = {}

    @property
    def on_device(self) -> bool:
        """Whether outputs can stay on the device (a GPU provider with I/O binding)."""
        return self._on_gpu

    @staticmethod
    def to_host(value: Any) -> np.ndarray:
        return value.numpy()

    def set_resident(self, name: str, value: Any) -> None:
        """An input that stays the same for the next runs: copied to the device once, then left out of their feeds."""
        if self._on_gpu and isinstance(value, np.ndarray):
            self._resident[name] = import_onnxruntime().OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value), "cuda", 0)
        else:
            self._resident[name] = value

    def run(self, feeds: dict[str, Any], *, keep_on_device: tuple[str, ...] = ()) -> dict[str, Any]:
        """Run once. ``feeds``: numpy arrays or (on a GPU provider) device ``OrtValue``s from another stage;
        outputs named in ``keep_on_device`` stay on the device as ``OrtValue``s (on the CPU: numpy)."""
        feeds = {**self._resident, **feeds}
        if not self._on_gpu:
            return dict(zip(self._out_names, self.session.run(self._out_names, feeds)))
        binding = self.session.io_binding()
        for name, value in feeds.items():
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(name, np.ascontiguousarray(value))  # one host-to-device copy
            else:
                binding.bind_ortvalue_input(name, value)  # already on the device
        for name in self._out_names:
            binding.bind_output(name, "cuda" if name in keep_on_device else "cpu")
        self.session.run_with_iobinding(binding)
        values = binding.get_outputs()
        return {n: v if n in keep_on_device else v.numpy() for n, v in zip(self._out_names, values)}

    def close(self) -> None:
        self.session = None
