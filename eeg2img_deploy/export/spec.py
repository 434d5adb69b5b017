"""The export spec every stage answers: a wrapper module, its I/O, random validation inputs, tolerances.

Adding a stage means one module in this package that returns a :class:`StageExport`, and one entry
in :data:`eeg2img_deploy.export.bundle.STAGE_BUILDERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..manifest import Precision, TensorSpec

# Validation: max |onnxruntime - torch fp32| / max |torch fp32| over random inputs at two batch sizes.
# fp16 graphs are judged against the fp32 PyTorch model, so their bound covers fp16 rounding (3 decimal
# digits, accumulated through the network).
DEFAULT_TOLERANCE = {Precision.FP32: 1e-4, Precision.FP16: 1e-2}


@dataclass
class StageExport:
    name: str
    module: object  # torch.nn.Module taking the inputs in order, returning one tensor
    inputs: tuple[TensorSpec, ...]  # fp32 graph's dtypes; dynamic axes by name
    outputs: tuple[TensorSpec, ...]
    make_inputs: Callable[[int, np.random.Generator], dict[str, np.ndarray]]  # batch -> fp32 feeds
    fp32_inputs: frozenset[str] = frozenset()  # I/O that stays float32 in an fp16 graph (timesteps, scales)
    fp32_only: bool = False  # numerics demand fp32 throughout (say why where it is set)
    tolerance: dict[Precision, float] = field(default_factory=lambda: dict(DEFAULT_TOLERANCE))
    batch_axis: str = "batch"
    steps: int | None = None  # a sampler graph's baked-in step count (one artifact per count)

    @property
    def file_stem(self) -> str:
        return self.name if self.steps is None else f"{self.name}_{self.steps}"

    def input_specs(self, precision: Precision) -> tuple[TensorSpec, ...]:
        return tuple(self._cast(t, precision) for t in self.inputs)

    def output_specs(self, precision: Precision) -> tuple[TensorSpec, ...]:
        return tuple(self._cast(t, precision) for t in self.outputs)

    def _cast(self, spec: TensorSpec, precision: Precision) -> TensorSpec:
        if precision is Precision.FP16 and spec.dtype == "float32" and spec.name not in self.fp32_inputs:
            return TensorSpec(spec.name, "float16", spec.shape)
        return spec

    def feeds_for(self, feeds: dict[str, np.ndarray], precision: Precision) -> dict[str, np.ndarray]:
        """Cast fp32 validation feeds to the graph's input dtypes."""
        return {t.name: feeds[t.name].astype(t.dtype) for t in self.input_specs(precision)}
