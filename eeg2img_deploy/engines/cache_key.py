"""Content-addressed engine keys: one hash over everything that changes what a build produces.

A TensorRT plan is bound to the ONNX it came from, the precision, the shape profile, the builder
settings, the exact TensorRT version and the GPU (compute capability and model). The key records all
of them as plain JSON; its sha256 names the file, so an unchanged rebuild finds its engine and skips
the build, and a changed part gives a new name instead of overwriting an engine in use.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

KEY_FORMAT = 1  # bump when the meaning of a key field changes, so old engines are rebuilt


def canonical_json(obj: Any) -> str:
    """Stable JSON: sorted keys, no whitespace, tuples as lists, no NaN. Equal content -> equal text."""
    return json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "value") and isinstance(obj.value, (str, int)):  # enums (Precision)
        return obj.value
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float):
        return int(obj) if obj.is_integer() else obj  # 4.0 GB and 4 GB are the same setting
    if hasattr(obj, "__int__"):  # numpy integers
        return int(obj)
    raise TypeError(f"cannot put {type(obj).__name__} into an engine key")


def engine_key(
    *,
    stage: str,
    onnx_sha256: str,
    precision: str,
    profile: dict[str, dict[str, list[int]]],
    builder_flags: dict[str, Any],
    tensorrt_version: str | None,
    compute_capability: str | None,
    gpu_name: str | None,
    data_sha256: str | None = None,
    backend: str = "tensorrt",
) -> tuple[dict[str, Any], str]:
    """Return ``(key, sha256 hex)``. ``profile`` maps each input to {"min","opt","max"} shapes.

    ``builder_flags`` holds every builder setting that changes the plan (optimization level,
    workspace, strongly typed, weight streaming; for onnxruntime the provider and optimization level).
    The onnxruntime path passes ``tensorrt_version=None`` and its own library version in the flags.
    """
    key = _plain(
        {
            "format": KEY_FORMAT,
            "backend": backend,
            "stage": stage,
            "onnx_sha256": onnx_sha256,
            "data_sha256": data_sha256,
            "precision": precision,
            "profile": profile,
            "builder_flags": builder_flags,
            "tensorrt_version": tensorrt_version,
            "compute_capability": compute_capability,
            "gpu_name": gpu_name,
        }
    )
    return key, key_hash(key)


def key_hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(key).encode("ascii")).hexdigest()


def sm_tag(compute_capability: str) -> str:
    """'8.7' -> 'sm87' (the GPU architecture, as nvcc names it)."""
    major, _, minor = compute_capability.partition(".")
    return f"sm{int(major)}{int(minor or 0)}"


def _stem(key: dict[str, Any], steps: int | None) -> str:
    """The stage, with the step count of a per-step-count graph (``prior_sampler_50``), as the bundle names it."""
    return key["stage"] if steps is None else f"{key['stage']}_{steps}"


def engine_file_name(key: dict[str, Any], digest: str, steps: int | None = None) -> str:
    """``<stage>[_<steps>]-<precision>-sm<cc>-trt<ver>-<hash12>.plan``: the GPU architecture is in the name,
    so engines for several GPUs can sit in one folder and a wrong one is obvious from `ls`."""
    if key.get("tensorrt_version") is None or key.get("compute_capability") is None:
        raise ValueError("a TensorRT engine key needs tensorrt_version and compute_capability")
    return (
        f"{_stem(key, steps)}-{key['precision']}-{sm_tag(key['compute_capability'])}"
        f"-trt{key['tensorrt_version']}-{digest[:12]}.plan"
    )


def ort_model_file_name(key: dict[str, Any], digest: str, steps: int | None = None) -> str:
    """``<stage>[_<steps>]-<precision>-<provider>-ort<ver>-<hash12>.onnx`` for onnxruntime-optimized models."""
    flags = key["builder_flags"]
    return f"{_stem(key, steps)}-{key['precision']}-{flags['provider']}-ort{flags['onnxruntime']}-{digest[:12]}.onnx"
