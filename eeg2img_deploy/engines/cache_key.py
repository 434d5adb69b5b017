"""Content-addressed engine keys: one hash over everything that changes what a build produces.

A TensorRT plan is bound to the ONNX it came from, the precision, the shape profile, the builder
settings, the exact TensorRT version and the GPU (compute capability and model). The key
(:class:`~eeg2img_deploy.manifest.EngineKey`) records all of them; the sha256 of its JSON names the file,
so an unchanged rebuild finds its engine and skips the build, and a changed part gives a new name
instead of overwriting an engine in use.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..manifest import EngineKey


def canonical_json(obj: dict[str, Any]) -> str:
    """Stable JSON: sorted keys, no whitespace, no NaN. Equal content -> equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def key_hash(key: EngineKey) -> str:
    return hashlib.sha256(canonical_json(key.to_dict()).encode("ascii")).hexdigest()


def sm_tag(compute_capability: str) -> str:
    """'8.7' -> 'sm87' (the GPU architecture, as nvcc names it)."""
    major, _, minor = compute_capability.partition(".")
    return f"sm{int(major)}{int(minor or 0)}"


def _stem(key: EngineKey, steps: int | None) -> str:
    """The stage, with the step count of a per-step-count graph (``prior_sampler_50``), as the bundle names it."""
    return str(key.stage) if steps is None else f"{key.stage}_{steps}"


def engine_file_name(key: EngineKey, digest: str, steps: int | None = None) -> str:
    """``<stage>[_<steps>]-<precision>-sm<cc>-trt<ver>-<hash12>.plan``: the GPU architecture is in the name,
    so engines for several GPUs can sit in one folder and a wrong one is obvious from `ls`."""
    if key.tensorrt_version is None or key.compute_capability is None:
        raise ValueError("a TensorRT engine key needs tensorrt_version and compute_capability")
    return (f"{_stem(key, steps)}-{key.precision.value}-{sm_tag(key.compute_capability)}"
            f"-trt{key.tensorrt_version}-{digest[:12]}.plan")


def ort_model_file_name(key: EngineKey, digest: str, steps: int | None = None) -> str:
    """``<stage>[_<steps>]-<precision>-<provider>-ort<ver>-<hash12>.onnx`` for onnxruntime-optimized models."""
    flags = key.onnxruntime
    return f"{_stem(key, steps)}-{key.precision.value}-{flags.provider.value}-ort{flags.onnxruntime}-{digest[:12]}.onnx"
