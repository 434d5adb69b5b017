"""The export spec every stage answers: a wrapper module, its I/O, random validation inputs, tolerances.

Adding a stage means one module in this package that returns a :class:`StageExport`, and one entry
in :data:`eeg2img_deploy.export.bundle.STAGE_BUILDERS`.

Graph edges are precision-free: a float tensor at a graph's inputs or outputs is float32 in the fp16
graph too, so every tensor that goes from one stage to another (embeddings, latents, prompt
embeddings, the caption's KV cache) has one dtype whatever the precision of either side, and stages
chain on a GPU, and in a Triton ensemble, as they are. The fp16 graph casts at its edges, inside
(:meth:`StageExport.traced_module`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..manifest import Precision, TensorSpec

if TYPE_CHECKING:
    from torch import nn

# Validation: max |onnxruntime - torch fp32| / max |torch fp32| over random inputs at two batch sizes.
# fp16 graphs are judged against the fp32 PyTorch model, so their bound covers fp16 rounding (3 decimal
# digits, accumulated through the network).
DEFAULT_TOLERANCE = {Precision.FP32: 1e-4, Precision.FP16: 1e-2}


@dataclass
class StageExport:
    name: str
    module: nn.Module  # taking the inputs in order, returning one tensor
    inputs: tuple[TensorSpec, ...]  # every graph's I/O dtypes, fp16 graphs' too (float32 edges); dynamic axes by name
    outputs: tuple[TensorSpec, ...]
    make_inputs: Callable[[int, np.random.Generator], dict[str, np.ndarray]]  # batch -> fp32 feeds
    fp32_inputs: frozenset[str] = frozenset()  # inputs the halved module takes in float32 (timesteps, scales)
    fp32_only: bool = False  # numerics demand fp32 throughout (say why where it is set)
    tolerance: dict[Precision, float] = field(default_factory=lambda: dict(DEFAULT_TOLERANCE))
    batch_axis: str = "batch"
    steps: int | None = None  # a sampler graph's baked-in step count (one artifact per count)

    @property
    def file_stem(self) -> str:
        return self.name if self.steps is None else f"{self.name}_{self.steps}"

    def input_specs(self, precision: Precision) -> tuple[TensorSpec, ...]:
        """The graph's inputs: the same in every precision (float32 edges)."""
        return self.inputs

    def output_specs(self, precision: Precision) -> tuple[TensorSpec, ...]:
        return self.outputs

    def feeds_for(self, feeds: dict[str, np.ndarray], precision: Precision) -> dict[str, np.ndarray]:
        """The graph's feeds from fp32 validation feeds (the same in every precision)."""
        return {t.name: feeds[t.name].astype(t.dtype) for t in self.input_specs(precision)}

    def half_inputs(self) -> frozenset[str]:
        """The inputs an fp16 graph casts to float16 at its edge: its float inputs but ``fp32_inputs``."""
        return frozenset(t.name for t in self.inputs if t.dtype == "float32" and t.name not in self.fp32_inputs)

    def module_feeds(self, feeds: dict[str, np.ndarray], precision: Precision) -> dict[str, np.ndarray]:
        """Feeds for ``module`` itself in ``precision`` (the halved module takes float16 where the graph casts)."""
        half = self.half_inputs() if precision is Precision.FP16 else frozenset()
        return {t.name: feeds[t.name].astype(np.float16 if t.name in half else t.dtype) for t in self.inputs}

    def traced_module(self, precision: Precision):
        """What export traces: ``module`` (already in ``precision``), with float32 edges in fp16."""
        if precision is Precision.FP32:
            return self.module
        return _float32_edges(self.module, tuple(t.name in self.half_inputs() for t in self.inputs))


def _float32_edges(module, halve: tuple[bool, ...]):
    """``module`` (halved) behind float32 edges: cast the inputs marked in ``halve`` to float16 and every
    float output to float32, as the graph's first and last nodes."""
    import torch

    class Float32Edges(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = module

        def forward(self, *args):
            out = self.inner(*(a.half() if h else a for a, h in zip(args, halve)))
            outs = out if isinstance(out, tuple) else (out,)
            outs = tuple(o.float() if o.is_floating_point() else o for o in outs)
            return outs if isinstance(out, tuple) else outs[0]

    return Float32Edges().eval()
