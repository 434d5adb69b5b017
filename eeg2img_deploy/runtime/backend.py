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


def resolve_shape(spec: TensorSpec, axes: dict[str, int]) -> tuple[int, ...]:
    """Replace dynamic axis names ("batch", "batch2") by their sizes."""
    try:
        return tuple(axes[d] if isinstance(d, str) else int(d) for d in spec.shape)
    except KeyError as e:
        raise ValueError(f"input {spec.name!r} has dynamic axis {e.args[0]!r} with no size given") from None


def axis_sizes(axes_settings: dict[str, dict[str, int]], which: str) -> dict[str, int]:
    """``settings['axes']`` maps an axis name to {"min", "opt", "max"}; pick one of them for every axis."""
    return {name: int(r[which]) for name, r in axes_settings.items()}
