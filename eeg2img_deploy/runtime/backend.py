"""The small interface every runtime backend answers: one session per stage, numpy in, numpy out.

Backends: :mod:`.ort_backend` (onnxruntime: CPU, CUDA, TensorRT execution providers) and
:mod:`.trt_backend` (TensorRT engines). The pipeline only sees :class:`StageSession`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..manifest import Artifact, TensorSpec


class StageSession(Protocol):
    artifact: Artifact

    @property
    def inputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def outputs(self) -> tuple[TensorSpec, ...]: ...

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once. ``feeds`` holds every input by name, already in the artifact's dtypes."""
        ...

    def close(self) -> None: ...


class ArtifactSpecs:
    """A stage session's ``inputs``/``outputs``: its artifact's, as the manifest records them."""

    artifact: Artifact

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.artifact.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.artifact.outputs
