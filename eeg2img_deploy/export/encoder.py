"""Export spec of the EEG encoder: eeg (B, C, T) f32 [+ subject_ids (B,) i64] -> eeg_embeds (B, 1024).

One spec for every encoder kind (ATM-S, BrainFLORA, a user's ``--encoder-factory`` module): C and T are its
EEG spec's, and an encoder that ignores subject ids gets a graph without that input (exporters and
TensorRT drop or refuse unused inputs; the runtime feeds each graph the inputs its manifest lists).
"""

from __future__ import annotations

import numpy as np

from ..manifest import EncoderKind, Precision, TensorSpec
from .spec import DEFAULT_TOLERANCE, StageExport

FP32_TOLERANCE = 1e-5  # every encoder's fp32 graph within 1e-5 (relative) of its torch module


def encoder_stage(encoder) -> StageExport:
    """``encoder``: a :class:`~eeg2img_deploy.models.encoders.LoadedEncoder` (contract already checked)."""
    channels, samples = encoder.spec.shape
    uses_ids = encoder.uses_subject_ids
    rows = encoder.num_subjects
    # ATM's ids past the table take the shared token, so validate on both; others stay inside their table
    high = rows + 2 if encoder.kind is EncoderKind.ATM else (rows or 2)

    def make_inputs(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        feeds = {"eeg": rng.standard_normal((batch, channels, samples), dtype=np.float32)}
        if uses_ids:
            ids = rng.integers(0, high, size=batch)
            ids[-1] = high - 1
            feeds["subject_ids"] = ids.astype(np.int64)
        return feeds

    inputs = (TensorSpec("eeg", "float32", ("batch", channels, samples)),)
    return StageExport(
        name="encoder",
        module=encoder.module.eval() if uses_ids else _eeg_only(encoder.module).eval(),
        inputs=inputs + ((TensorSpec("subject_ids", "int64", ("batch",)),) if uses_ids else ()),
        outputs=(TensorSpec("eeg_embeds", "float32", ("batch", 1024)),),
        make_inputs=make_inputs,
        tolerance={**DEFAULT_TOLERANCE, Precision.FP32: FP32_TOLERANCE},
    )


def _eeg_only(encoder):
    """``forward(eeg)`` around an encoder whose output does not depend on the subject ids it is given."""
    import torch

    class EEGOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, eeg: torch.Tensor) -> torch.Tensor:
            return self.encoder(eeg, torch.zeros(eeg.shape[0], dtype=torch.int64, device=eeg.device))

    return EEGOnly()
