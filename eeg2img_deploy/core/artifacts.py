"""Which artifact runs each stage: one policy for the runtime, ``build-engines`` and ``triton-repo``.

Precision follows what the folder holds, per stage. Asked for none: fp16 where ``prefer_fp16`` (a GPU) and
the folder has it, else fp32. Asked for one: that one where the folder has it; a stage the bundle exports
in fp32 only (its ``fp32_only_stages``: the SDXL VAE, the text encoders) stays fp32; any other stage
without it is refused with the command that makes it. A stage exported per step count (``prior_sampler``)
gives one artifact per count, under its :attr:`~..manifest.Artifact.session_key` (``prior_sampler@50``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..errors import ManifestError
from ..manifest import Artifact, Backend, Manifest, Precision


def select_artifacts(manifest: Manifest, stages: Iterable[str], precision: Precision | str | None, *,
                     prefer_fp16: bool, folder: str | Path) -> dict[str, Artifact]:
    """session key -> the artifact that runs it, for ``stages`` of the folder ``folder`` (named in errors)."""
    fp32_only = set(manifest.bundle.fp32_only_stages)
    chosen = {}
    counts: dict[str, list[int | None]] = {s: [*manifest.step_counts(s)] or [None] for s in stages}
    for stage, steps in [(s, n) for s in counts for n in counts[s]]:
        have = manifest.precisions(stage, steps)
        if precision is None:
            want = Precision.FP16 if prefer_fp16 and Precision.FP16 in have else Precision.FP32
            want = want if want in have else have[0]
        else:
            want = Precision(precision)
            if want not in have and stage in fp32_only:
                want = Precision.FP32
            if want not in have:
                fix = (f"eeg2img-deploy export ... --precision {want.value}" if manifest.backend is Backend.ONNX
                       else f"eeg2img-deploy build-engines --precision {want.value} (from a bundle that has it)")
                raise ManifestError(
                    f"{folder} holds {stage} in {', '.join(p.value for p in have)} only, not {want.value}: "
                    f"leave out --precision (each stage then runs what the folder holds) or run `{fix}`"
                )
        a = manifest.artifact(stage, want, steps)
        chosen[a.session_key] = a
    return chosen
