"""Opening a folder's stages for one backend (which artifact each stage runs: :mod:`..core.artifacts`, fp16 on
a GPU where the folder has it), and each backend's options.

The provider is checked before anything is chosen or opened, so a CPU-only machine asked for CUDA
says "no CUDA", not that some fp16 file is missing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..core.artifacts import select_artifacts
from ..manifest import Artifact, Manifest
from .backend import StageSession

log = logging.getLogger(__name__)


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
    from ..onnxrt import check_provider, trt_ep_options
    from .ort_backend import OrtStage

    provider = check_provider(provider, allow_cpu_fallback)
    chosen = select_artifacts(manifest, stages, precision, prefer_fp16=provider != "cpu", folder=folder)
    ort = manifest.engine.onnxruntime if manifest.engine else None
    common = ort.tensorrt_ep.options(folder) if ort and ort.tensorrt_ep else {}
    sessions: dict[str, StageSession] = {}
    try:
        for stage, a in chosen.items():
            trt_options = None
            if provider == "tensorrt":
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
    chosen = select_artifacts(manifest, stages, precision, prefer_fp16=True, folder=folder)
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
