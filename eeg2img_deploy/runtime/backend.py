"""The small interface every runtime backend answers: one session per stage, numpy in, numpy out.

Backends: :mod:`.ort_backend` (onnxruntime: CPU, CUDA, TensorRT execution providers) and
:mod:`.trt_backend` (TensorRT engines). The pipeline only sees :class:`StageSession`.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ..errors import EngineError
from ..manifest import Artifact, TensorSpec


class StageSession(Protocol):
    artifact: Artifact

    @property
    def inputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def outputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def on_device(self) -> bool:
        """Whether outputs can stay on the device (``run``'s ``keep_on_device``) and inputs be made resident."""
        ...

    def run(self, feeds: dict[str, Any], *, keep_on_device: tuple[str, ...] = ()) -> dict[str, Any]:
        """Run once. ``feeds`` holds every input by name (not the resident ones), numpy in the artifact's dtypes
        or a device value from a stage of the same backend; outputs named in ``keep_on_device`` stay there."""
        ...

    def to_host(self, value: Any) -> np.ndarray:
        """One of this stage's outputs kept on the device, as numpy."""
        ...

    def set_resident(self, name: str, value: Any) -> None:
        """An input that stays the same for the next runs: placed on the device once, then left out of their
        feeds (sessions ``on_device`` only)."""
        ...

    def close(self) -> None: ...


class ArtifactSpecs:
    """A stage session's ``inputs``/``outputs``: its artifact's, as the manifest records them; and what a
    host-only session answers for the device part of :class:`StageSession`."""

    artifact: Artifact

    @property
    def on_device(self) -> bool:
        return False

    def to_host(self, value: Any) -> np.ndarray:
        return np.asarray(value)

    def set_resident(self, name: str, value: Any) -> None:
        raise EngineError(f"{self.artifact.stage} runs on the host: every input goes in its feeds")

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.artifact.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.artifact.outputs
