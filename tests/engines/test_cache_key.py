"""The engine key: stable, and different when any part that changes the build changes."""

from __future__ import annotations

import pytest

from eeg2img_deploy.engines.cache_key import (
    canonical_json,
    engine_file_name,
    engine_key,
)
from eeg2img_deploy.manifest import Precision

BASE = dict(
    stage="unet",
    onnx_sha256="a" * 64,
    data_sha256="b" * 64,
    precision="fp16",
    profile={"latents": {"min": [1, 4, 64, 64], "opt": [1, 4, 64, 64], "max": [4, 4, 64, 64]}},
    builder_flags={"builder_optimization_level": 3, "workspace_bytes": None, "strongly_typed": True, "weight_streaming": False},
    tensorrt_version="10.3.0",
    compute_capability="8.7",
    gpu_name="Orin",
)

CHANGES = {
    "stage": "vae_decoder",
    "onnx_sha256": "c" * 64,
    "data_sha256": "d" * 64,
    "precision": "fp32",
    "profile": {"latents": {"min": [1, 4, 64, 64], "opt": [2, 4, 64, 64], "max": [4, 4, 64, 64]}},
    "builder_flags.builder_optimization_level": 4,
    "builder_flags.workspace_bytes": 2 << 30,
    "builder_flags.strongly_typed": False,
    "builder_flags.weight_streaming": True,
    "tensorrt_version": "11.4.0.106",
    "compute_capability": "9.0",
    "gpu_name": "NVIDIA H100",
}


@pytest.mark.parametrize("part", sorted(CHANGES))
def test_key_changes_when_any_part_changes(part: str) -> None:
    changed = {**BASE, "builder_flags": dict(BASE["builder_flags"])}
    if part.startswith("builder_flags."):
        changed["builder_flags"][part.split(".", 1)[1]] = CHANGES[part]
    else:
        changed[part] = CHANGES[part]
    assert engine_key(**changed)[1] != engine_key(**BASE)[1]


def test_key_is_stable_across_dict_order_tuples_and_enums() -> None:
    reordered = dict(reversed(list(BASE.items())))
    reordered["profile"] = {"latents": {"max": (4, 4, 64, 64), "opt": (1, 4, 64, 64), "min": (1, 4, 64, 64)}}
    reordered["precision"] = Precision.FP16
    assert engine_key(**reordered) == engine_key(**BASE)
    assert canonical_json({"b": 1, "a": [1.0, 2]}) == '{"a":[1,2],"b":1}'


def test_engine_file_name_names_the_gpu_architecture_and_version() -> None:
    key, digest = engine_key(**BASE)
    assert engine_file_name(key, digest) == f"unet-fp16-sm87-trt10.3.0-{digest[:12]}.plan"


def test_fused_prior_engine_files_carry_their_step_count(ort_engines) -> None:
    """Before: ``prior_sampler-fp32-cpu-...onnx`` twice, told apart only by the hash."""
    _, manifest = ort_engines
    names = {a.steps: a.file for a in manifest.artifacts if a.stage == "prior_sampler"}
    assert sorted(names) == [10, 50]
    for steps, name in names.items():
        assert name.startswith(f"prior_sampler_{steps}-fp32-cpu-ort"), name
    key, digest = engine_key(**BASE)
    assert engine_file_name(key, digest, 50).startswith("unet_50-fp16-sm87-")  # the same rule for plans


def test_an_engine_folder_given_as_bundle_is_named_in_good_english(ort_engines, tmp_path) -> None:
    from eeg2img_deploy.engines.build import build_engines
    from eeg2img_deploy.errors import ManifestError

    folder, _ = ort_engines
    with pytest.raises(ManifestError) as e:
        build_engines(folder, tmp_path / "out", backend="onnxruntime", ort_provider="cpu", progress=False)
    assert "is an engine folder (onnxruntime), not an export bundle" in str(e.value)  # was "a onnxruntime"
