"""The onnxruntime path of ``build-engines``: graph-optimized ONNX models saved by onnxruntime itself.

onnxruntime optimizes a graph every time it opens it; saving the result once (``SessionOptions.
optimized_model_filepath``) makes later session start-up cheaper. What is saved must reload anywhere,
so every model is optimized on the CPU provider (the nodes placed on the CPU):

* ``cpu``: ORT_ENABLE_EXTENDED (fusions into CPU kernels, for the CPU provider that runs it);
* ``cuda``: ORT_ENABLE_BASIC only (provider-independent folding and eliminations, applied before nodes
  are placed); the session applies the extended and layout optimizations for CUDA itself when it opens
  the model (onnxruntime's default level). Optimizing on the CUDA provider would save what the placement
  added: Memcpy nodes, which no other session has a kernel for ("Failed to find kernel for
  MemcpyToHost", microsoft/onnxruntime#11348), and CUDA-only fused nodes;
* ``tensorrt``: the TensorRT execution provider compiles the graph itself and does not take
  onnxruntime's fused contrib ops, so ORT_ENABLE_BASIC as for CUDA, and the EP settings (engine cache
  folder) are recorded for the runtime (``TensorRTEPOptions`` in the manifest).

Models over ~2 GB cannot be one protobuf: their initializers go to an external ``.data`` file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailableError, EngineError
from ..fileio import staging_dir
from ..manifest import Artifact, AxisRange, Provider, ShapeRange, TensorRTEPOptions
from ..onnxrt import import_onnxruntime, open_session, trt_ep_options

log = logging.getLogger(__name__)

PROVIDERS = {p.value: p.execution_provider for p in Provider}
EXTERNAL_DATA_THRESHOLD = int(1.8 * (1 << 30))  # protobuf's hard limit is 2 GB; keep a margin
EXTERNAL_INITIALIZER_MIN_BYTES = 1024  # smaller initializers (shapes, scalars) stay in the model


@dataclass(frozen=True)
class OrtTarget:
    provider: str  # "cpu" | "cuda" | "tensorrt"
    level: str  # "extended" | "basic"

    @property
    def provider_name(self) -> str:
        return PROVIDERS[self.provider]


def _ort() -> Any:
    return import_onnxruntime()


def onnxruntime_version() -> str:
    return str(_ort().__version__)


def _has_nvidia_gpu() -> bool:
    return Path("/proc/driver/nvidia/version").exists() or Path("/etc/nv_tegra_release").exists()


def choose_ort_target(provider: str | None = None) -> OrtTarget:
    """The provider to optimize for: ``provider`` if given, else CUDA where onnxruntime-gpu can use it, else CPU."""
    available = _ort().get_available_providers()
    if provider is None:
        if "CUDAExecutionProvider" in available:
            provider = "cuda"
        else:
            if _has_nvidia_gpu():
                log.warning(
                    "this machine has an NVIDIA GPU but onnxruntime has no CUDA provider: skipping the "
                    "CUDA-optimized models and writing CPU ones (pip install 'eeg2img-deploy[gpu-cu12]', or "
                    "'[gpu-cu13]' for a CUDA 13 driver)"
                )
            provider = "cpu"
    if provider not in PROVIDERS:
        raise EngineError(f"unknown onnxruntime provider {provider!r}: choose one of {', '.join(PROVIDERS)}")
    if provider == "cuda" and PROVIDERS["cuda"] not in available:
        raise BackendUnavailableError(
            f"onnxruntime has no CUDA provider here (it has {available}): pip install 'eeg2img-deploy[gpu-cu12]' "
            "(CUDA 12 driver) or '[gpu-cu13]' (CUDA 13)"
        )
    if provider == "tensorrt" and PROVIDERS["tensorrt"] not in available:
        log.warning("onnxruntime has no TensorRT provider here; the models are still written for a machine that has it")
    return OrtTarget(provider, "extended" if provider == "cpu" else "basic")


def optimize_model(
    onnx_path: str | Path, out_path: str | Path, target: OrtTarget, *, external: bool | None = None
) -> tuple[Path, Path | None]:
    """Write onnxruntime's optimized version of ``onnx_path`` to ``out_path`` (and ``<out>.data`` for large
    models), both appearing at once: a crash leaves neither. Returns (model path, data path or None)."""
    ort = _ort()
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    data_name = out_path.name + ".data"
    if external is None:
        external = _total_size(onnx_path) > EXTERNAL_DATA_THRESHOLD
    with staging_dir(out_path.parent) as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            if target.level == "extended"
            else ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        )
        so.optimized_model_filepath = str(tmp / out_path.name)
        if external:
            so.add_session_config_entry("session.optimized_model_external_initializers_file_name", data_name)
            so.add_session_config_entry(
                "session.optimized_model_external_initializers_min_size_in_bytes", str(EXTERNAL_INITIALIZER_MIN_BYTES)
            )
        try:  # on the CPU provider whatever the target: a model saved after GPU placement holds Memcpy nodes
            ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise EngineError(f"onnxruntime could not optimize {onnx_path} for {target.provider}: {e}") from e
        written = tmp / out_path.name
        if not written.is_file():
            raise EngineError(f"onnxruntime did not write the optimized model for {onnx_path}")
        data_path = None
        if (tmp / data_name).is_file():
            data_path = out_path.parent / data_name
            os.replace(tmp / data_name, data_path)  # the data first: the model is what marks it complete
        os.replace(written, out_path)
    return out_path, data_path


def _total_size(onnx_path: Path) -> int:
    return sum(p.stat().st_size for p in onnx_path.parent.glob(onnx_path.name + "*") if p.is_file())  # + .data


def warm_up_tensorrt_ep(folder: Path, artifact: Artifact, axes: dict[str, AxisRange]) -> bool:
    """Open ``artifact`` on the TensorRT EP with the runtime's options and run it once at the profile's opt
    shapes, so the EP builds its engine (and caches it in the folder) now instead of in the first ``infer``.
    False when this onnxruntime has no TensorRT EP (the engine is then built at the first run)."""
    import numpy as np

    if PROVIDERS["tensorrt"] not in _ort().get_available_providers():
        log.warning("%s: no TensorRT EP here; its TensorRT engine will be built during the first infer", artifact.stage)
        return False
    options = trt_ep_options(TensorRTEPOptions().options(folder), artifact, axes)  # as build-engines records them
    session, _, _ = open_session(folder / artifact.file, artifact, "tensorrt", trt_options=options)
    feeds = {t.name: np.zeros(ShapeRange.of(t, axes).opt, t.dtype) for t in artifact.inputs}
    session.run(None, feeds)
    return True
