"""Opening a folder's stages for one backend: which artifact each stage runs, and each backend's options.

Precision follows what the folder holds, per stage: on a GPU fp16 where the folder has it, else fp32
(the SDXL VAE is fp32 only; an onnxruntime engine folder is fp32 unless built with ``--precision
fp16``). An explicit precision is used where it exists and refused, with the command that makes it,
where it does not (fp32-only stages stay fp32).

The provider is checked before anything is chosen or opened, so a CPU-only machine asked for CUDA
says "no CUDA", not that some fp16 file is missing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import ManifestError
from ..manifest import Artifact, Backend, Manifest, Precision
from .backend import StageSession

log = logging.getLogger(__name__)


def choose_artifacts(manifest: Manifest, stages: list[str], precision: Precision | str | None, *, on_gpu: bool,
                     folder: Path) -> dict[str, Artifact]:  # fmt: skip
    """stage -> artifact; a stage exported per step count (``prior_sampler``) gives ``stage@steps`` -> artifact."""
    fp32_only = set(manifest.bundle.fp32_only_stages)
    chosen = {}
    for stage, steps in [(s, n) for s in stages for n in manifest.step_counts(s) or [None]]:
        have = manifest.precisions(stage, steps)
        if precision is None:
            want = Precision.FP16 if on_gpu and Precision.FP16 in have else Precision.FP32
            want = want if want in have else have[0]
        else:
            want = Precision(precision)
            if want not in have and stage in fp32_only:
                want = Precision.FP32
            if want not in have:
                fix = (f"eeg2img-deploy export ... --precision {want.value}" if manifest.backend is Backend.ONNX
                       else f"eeg2img-deploy build-engines --precision {want.value} (from a bundle that has it)")  # fmt: skip
                raise ManifestError(
                    f"{folder} holds {stage} in {', '.join(p.value for p in have)} only, not {want.value}: "
                    f"leave out --precision (each stage then runs what the folder holds) or run `{fix}`"
                )
        chosen[stage if steps is None else f"{stage}@{steps}"] = manifest.artifact(stage, want, steps)
    return chosen


def bundle_hint(manifest: Manifest, folder: Path) -> str:
    """The export bundle an engine folder was built from, for the rebuild command in error messages."""
    if manifest.parent is None:
        return "<the export bundle>"
    found = manifest.parent.folder(folder)
    return str(found) if found is not None else f"export/{manifest.parent.bundle}"


def open_sessions(folder: Path, manifest: Manifest, stages: list[str], *, backend: str, precision: Any,
                  provider: str, allow_cpu_fallback: bool, threads: int | None) -> tuple[dict[str, StageSession], Any]:  # fmt: skip
    """Open every stage; returns (stage -> session, the shared CUDA stream or None)."""
    if backend == "tensorrt":
        return _open_tensorrt(folder, manifest, stages, precision)
    from .ort_backend import OrtStage, check_provider

    provider = check_provider(provider, allow_cpu_fallback)
    chosen = choose_artifacts(manifest, stages, precision, on_gpu=provider != "cpu", folder=folder)
    ort = manifest.engine.onnxruntime if manifest.engine else None
    common = dict(ort.tensorrt_ep or {}) if ort else {}
    for key in ("trt_engine_cache_path", "trt_timing_cache_path"):  # relative to the engine folder
        if key in common:
            common[key] = str(folder / common[key])
    sessions: dict[str, StageSession] = {}
    try:
        for stage, a in chosen.items():
            trt_options = None
            if provider == "tensorrt":
                from .ort_backend import trt_ep_options

                trt_options = trt_ep_options(common, a, manifest.bundle.axes)
            sessions[stage] = OrtStage(folder / a.file, a, provider=provider, allow_cpu_fallback=allow_cpu_fallback,
                                       threads=threads, trt_options=trt_options)  # fmt: skip
    except BaseException:
        for s in sessions.values():
            s.close()
        raise
    _log_opened(folder, f"onnxruntime/{provider}", chosen)
    return sessions, None


def _open_tensorrt(folder: Path, manifest: Manifest, stages: list[str], precision: Any) -> tuple[dict, Any]:
    from ..gpu import cuda_device, import_cudart, import_tensorrt
    from .trt_backend import CudaStream, open_tensorrt_stage

    import_tensorrt()
    cuda_device(import_cudart())  # "no GPU" / "driver too old" before any choice or TensorRT object
    chosen = choose_artifacts(manifest, stages, precision, on_gpu=True, folder=folder)
    engines = manifest.engine.tensorrt if manifest.engine and manifest.engine.tensorrt else None
    stream = CudaStream()
    sessions: dict[str, StageSession] = {}
    try:
        for stage, a in chosen.items():
            sessions[stage] = open_tensorrt_stage(
                folder, a, bundle_hint=bundle_hint(manifest, folder), cuda_graph=bool(engines and engines.cuda_graphs),
                weight_streaming_budget_bytes=engines.weight_streaming_budget_bytes.get(stage) if engines else None,
                stream=stream,
            )  # fmt: skip
    except BaseException:
        for s in sessions.values():
            s.close()
        stream.close()
        raise
    _log_opened(folder, "tensorrt", chosen)
    return sessions, stream


def _log_opened(folder: Path, what: str, chosen: dict[str, Artifact]) -> None:
    log.info("opened %s (%s): %s", folder, what, ", ".join(f"{s}={a.file} ({a.precision.value})" for s, a in chosen.items()))
