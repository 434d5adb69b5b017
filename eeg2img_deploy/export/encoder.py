"""Export spec of the ATM encoder: eeg (B, 63, 250) f32 + subject_ids (B,) i64 -> embedding (B, 1024)."""

from __future__ import annotations

import numpy as np

from ..manifest import TensorSpec
from .spec import StageExport


def encoder_stage(encoder) -> StageExport:
    n_subjects = encoder.num_subjects

    def make_inputs(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        # ids cover in-table rows and the shared token (id >= S) in one batch
        ids = rng.integers(0, n_subjects + 2, size=batch)
        ids[-1] = n_subjects + 1
        return {"eeg": rng.standard_normal((batch, 63, 250), dtype=np.float32), "subject_ids": ids.astype(np.int64)}

    return StageExport(
        name="encoder",
        module=encoder.eval(),
        inputs=(TensorSpec("eeg", "float32", ("batch", 63, 250)), TensorSpec("subject_ids", "int64", ("batch",))),
        outputs=(TensorSpec("eeg_embeds", "float32", ("batch", 1024)),),
        make_inputs=make_inputs,
    )
