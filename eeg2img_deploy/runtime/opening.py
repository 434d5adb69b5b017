"""Opening a folder for :class:`~.pipeline.Pipeline`: options checked, stages chosen, hashes verified.

Everything :meth:`Pipeline.from_bundle` does before the pipeline exists, so that the pipeline module
holds the chain itself: the CLI's names for each choice, the backend a folder was made for, the
stages a run needs (with the export option that adds a missing one), and the one whitening matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..eeg.spec import EEGSpec
from ..eeg.whitening import check_whitening, load_whitening
from ..errors import EEGInputError, ManifestError, OptionError
from ..integrity import verify_files
from ..manifest import RUNTIME_BACKENDS, Backend, BundleSettings, Decoder, EncoderKind, Manifest, Precision, Provider, Stage, read_manifest
from ..names import LOW_LEVEL_STAGES
from .backend import StageSession
from .sessions import open_sessions

REQUIRED = (Stage.ENCODER, Stage.PRIOR, Stage.UNET)
FUSED_PRIOR = Stage.PRIOR_SAMPLER  # optional: opened (one session per step count) where the folder has it


@dataclass(frozen=True)
class OpenOptions:
    """from_bundle's backend choices, checked; kept for stages opened later (``Pipeline.open_stage``)."""

    backend: Backend
    precision: Precision | None
    provider: Provider
    allow_cpu_fallback: bool
    threads: int | None
    verify: bool = False  # hash every file again instead of trusting the folder's record (integrity.py)

    @classmethod
    def check(cls, backend, precision, provider, allow_cpu_fallback: bool, threads: int | None,
              verify: bool = False) -> OpenOptions:
        if threads is not None and threads < 1:
            raise OptionError(f"--threads must be >= 1, got {threads}")
        return cls(
            backend=_enum(Backend, backend, "--backend"),
            precision=None if precision is None else _enum(Precision, precision, "--precision"),
            provider=_enum(Provider, provider, "--provider"),
            allow_cpu_fallback=allow_cpu_fallback,
            threads=threads,
            verify=verify,
        )

    def open(self, folder: Path, manifest: Manifest, stages: list[str]) -> tuple[dict[str, StageSession], Any]:
        """``stages`` hash-checked and opened: (sessions, the CUDA stream they share or None)."""
        verify_files(folder, manifest, stages, force=self.verify)
        return open_sessions(folder, manifest, stages, backend=self.backend, precision=self.precision,
                             provider=self.provider, allow_cpu_fallback=self.allow_cpu_fallback, threads=self.threads)  # fmt: skip


E = TypeVar("E", bound=Enum)


def _enum(kind: type[E], value: Any, option: str) -> E:
    """``value`` as the enum ``kind``, or a one-line error naming the CLI option."""
    try:
        return kind(value)
    except ValueError:
        raise OptionError(f"{option} must be one of {[m.value for m in kind]}, got {value!r}") from None


def read_folder(folder: Path, backend: Backend) -> Manifest:
    """The folder's manifest, refused (with the command that makes the right folder) for another backend."""
    manifest = read_manifest(folder)
    if backend not in RUNTIME_BACKENDS:
        raise OptionError(f"--backend must be one of {[b.value for b in RUNTIME_BACKENDS]}, got {backend.value!r}")
    ok = {Backend.ONNXRUNTIME: (Backend.ONNX, Backend.ONNXRUNTIME), Backend.TENSORRT: (Backend.TENSORRT,)}
    if manifest.backend not in ok[backend]:
        if backend is Backend.TENSORRT:
            # an engine folder is no bundle: advise the bundle it was built from
            parent = manifest.parent.folder(folder) if manifest.parent else None
            source = parent if parent is not None else (
                f"<the export bundle {manifest.parent.bundle!r}>" if manifest.parent else folder)
            fix = f"eeg2img-deploy build-engines --bundle {source} --backend tensorrt"
        else:
            fix = "point --bundle at the export bundle or an onnxruntime engine folder"
        raise ManifestError(f"{folder} holds {manifest.backend.value} artifacts, not {backend.value} ones: {fix}")
    return manifest


def stages_to_open(folder: Path, manifest: Manifest, vae: Decoder, low_level: bool) -> list[str]:
    """The stages a pipeline opens up front; a missing one is named with the export option that adds it."""
    stages = list(dict.fromkeys([*REQUIRED, vae.stage, *(LOW_LEVEL_STAGES if low_level else ())]))
    missing = [str(s) for s in stages if s not in manifest.stages()]
    if missing:
        hint = " (export with a TAESDXL folder: weights/taesdxl or --taesd)" if Stage.TAESD_DECODER in missing else ""
        if Stage.LOW_LEVEL_ENCODER in missing:
            hint = " (export with a low-level encoder: weights/low-level/ or --low-level-encoder PATH)"
        raise ManifestError(f"{folder} lacks stage(s) {missing}{hint}: export the bundle again")
    if FUSED_PRIOR in manifest.stages():
        stages.append(FUSED_PRIOR)
    return stages


def choose_whitening(shipped: np.ndarray | None, given, spec: EEGSpec) -> np.ndarray | None:
    """The one whitening matrix the pipeline applies: the bundle's, or the caller's; never both."""
    if given is None:
        return None if shipped is None else check_whitening(shipped, spec, what="the bundle's whitening matrix")
    if shipped is not None:
        raise EEGInputError(
            "this bundle ships a whitening matrix and applies it to every trial; whitening again would distort "
            "the EEG: drop --whitening (or export a bundle without one)"
        )
    return load_whitening(given, spec) if isinstance(given, (str, Path)) else check_whitening(given, spec)


def check_subjects(ids, bundle: BundleSettings, shared_subject_token: bool) -> None:
    """Subject ids past the encoder's table (``bundle.num_subjects`` rows) are refused unless the shared token is
    asked for (the paper's ATM encoder has one; other encoders have none to fall back on). No table: any id."""
    num_subjects = bundle.num_subjects
    if num_subjects is None:  # no subject table: ids are ignored, or passed to the encoder as they are
        return
    unknown = sorted({int(i) for i in ids if i >= num_subjects})
    if unknown and bundle.encoder.kind is not EncoderKind.ATM:  # no shared token to fall back on
        raise EEGInputError(f"subject id(s) {unknown} are past this encoder's subject table ({num_subjects} "
                            f"rows, ids 0..{num_subjects - 1}): pass a --subject inside it")
    if unknown and not shared_subject_token:
        sub10 = "; THINGS-EEG2 sub-10 is id 10, past the paper's 10-row tables" if 10 in unknown else ""
        raise EEGInputError(
            f"subject id(s) {unknown} are not in this encoder's subject table ({num_subjects} rows, ids "
            f"0..{num_subjects - 1}{sub10}); the paper gives such ids the encoder's learned shared subject "
            "token instead of a row: pass --shared-subject-token (infer, stream, serve) to do the same"
        )
