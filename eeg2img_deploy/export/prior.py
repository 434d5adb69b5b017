"""Export spec of the diffusion prior's denoiser, cond and uncond rows in one call.

Inputs are ``2B`` rows (axis "batch2"): the runtime stacks the conditional rows (cond_mask 1) over
the unconditional ones (cond_mask 0, condition terms exactly zero), so each sampling step is one call.
"""

from __future__ import annotations

import numpy as np

from ..manifest import TensorSpec
from .spec import StageExport


def prior_stage(prior) -> StageExport:
    def make_inputs(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        rows = 2 * batch
        return {
            "x": rng.standard_normal((rows, 1024), dtype=np.float32),
            "t": rng.integers(0, 1000, size=rows).astype(np.float32),
            "cond": rng.standard_normal((rows, 1024), dtype=np.float32) * 3,
            "cond_mask": np.repeat(np.array([1.0, 0.0], np.float32), batch),
        }

    return StageExport(
        name="prior",
        module=prior.eval(),  # forward(x, t, cond, cond_mask) is already the export signature
        inputs=(
            TensorSpec("x", "float32", ("batch2", 1024)),
            TensorSpec("t", "float32", ("batch2",)),
            TensorSpec("cond", "float32", ("batch2", 1024)),
            TensorSpec("cond_mask", "float32", ("batch2",)),
        ),
        outputs=(TensorSpec("eps", "float32", ("batch2", 1024)),),
        make_inputs=make_inputs,
        # timesteps reach 999 and feed a sinusoid: kept fp32, cast after the features are computed
        fp32_inputs=frozenset({"t"}),
        batch_axis="batch2",
    )
