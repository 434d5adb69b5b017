"""The engine key: stable, and different when any part that changes the build changes."""

from __future__ import annotations

import dataclasses
import json

import pytest

from eeg2img_deploy.engines.cache_key import canonical_json, engine_file_name, key_hash
from eeg2img_deploy.manifest import EngineKey, ShapeRange, TensorRTFlags

BASE = EngineKey(
    backend="tensorrt",
    stage="unet",
    onnx_sha256="a" * 64,
    data_sha256="b" * 64,
    precision="fp16",
    profile={"latents": ShapeRange((1, 4, 64, 64), (1, 4, 64, 64), (4, 4, 64, 64))},
    builder_flags=TensorRTFlags(builder_optimization_level=3, workspace_bytes=None),
    tensorrt_version="10.3.0",
    compute_capability="8.7",
    gpu_name="Orin",
)

CHANGES = {
    "stage": "vae_decoder",
    "onnx_sha256": "c" * 64,
    "data_sha256": "d" * 64,
    "precision": "fp32",
    "profile": {"latents": ShapeRange((1, 4, 64, 64), (2, 4, 64, 64), (4, 4, 64, 64))},
    "builder_flags.builder_optimization_level": 4,
    "builder_flags.workspace_bytes": 2 << 30,
    "builder_flags.strongly_typed": False,
    "builder_flags.weight_streaming": True,
    "builder_flags.tf32": True,
    "tensorrt_version": "11.4.0.106",
    "compute_capability": "9.0",
    "gpu_name": "NVIDIA H100",
}


@pytest.mark.parametrize("part", sorted(CHANGES))
def test_key_changes_when_any_part_changes(part: str) -> None:
    if part.startswith("builder_flags."):
        flags = dataclasses.replace(BASE.tensorrt, **{part.split(".", 1)[1]: CHANGES[part]})
        changed = dataclasses.replace(BASE, builder_flags=flags)
    else:
        changed = dataclasses.replace(BASE, **{part: CHANGES[part]})
    assert key_hash(changed) != key_hash(BASE)


# Engine keys as engine folders of earlier versions wrote them (a TensorRT key from before the tf32 flag, an
# onnxruntime one), with the hash that named their files: read and hashed again, the same key and the same hash.
OLD_KEYS = [
    ('{"format": 1, "backend": "tensorrt", "stage": "encoder", "onnx_sha256": "6d4fa68003112886a61a976097a77350e97870b2'
     '4bc8a8041ad348e3f4a16ca7", "data_sha256": null, "precision": "fp16", "profile": {"eeg": {"min": [1, 63, 250], '
     '"opt": [1, 63, 250], "max": [4, 63, 250]}, "subject_ids": {"min": [1], "opt": [1], "max": [4]}}, '
     '"builder_flags": {"builder_optimization_level": 3, "workspace_bytes": null, "strongly_typed": true, '
     '"weight_streaming": false}, "tensorrt_version": "10.3.0", "compute_capability": "8.9", "gpu_name": '
     '"NVIDIA Fake GPU"}', "1098bd9d0791a513a50b8aa869ddf3e6bebc301f62c74a7b25ccf080f4879442"),
    ('{"format": 1, "backend": "onnxruntime", "stage": "encoder", "onnx_sha256": "e20d922330e4f8fec752889eb59ab1e27a0'
     '05b62cb20f4931f04d77dc0647385", "data_sha256": null, "precision": "fp32", "profile": {}, "builder_flags": '
     '{"provider": "cuda", "graph_optimization_level": "extended", "onnxruntime": "1.32.0"}, "tensorrt_version": null, '
     '"compute_capability": null, "gpu_name": null}', "09d121cfbd629975199cf8fb83e29aaef81c300fddf3c4da295756121abe0a2b"),
]


@pytest.mark.parametrize("text, digest", OLD_KEYS)
def test_keys_written_before_read_back_the_same_and_hash_the_same(text: str, digest: str) -> None:
    key = EngineKey.from_dict(json.loads(text))
    assert json.dumps(key.to_dict()) == text and key_hash(key) == digest
    assert key.profile.get("eeg", ShapeRange((1, 63, 250), (1, 63, 250), (4, 63, 250))).max == (4, 63, 250)


def test_key_hashes_canonical_json() -> None:
    assert key_hash(BASE) == key_hash(EngineKey.from_dict(json.loads(json.dumps(BASE.to_dict()))))
    assert canonical_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'
    assert BASE.tensorrt.tf32 is None and "tf32" not in BASE.to_dict()["builder_flags"]


def test_engine_file_name_names_the_gpu_architecture_and_version() -> None:
    digest = key_hash(BASE)
    assert engine_file_name(BASE, digest) == f"unet-fp16-sm87-trt10.3.0-{digest[:12]}.plan"


def test_fused_prior_engine_files_carry_their_step_count(ort_engines) -> None:
    """Before: ``prior_sampler-fp32-cpu-...onnx`` twice, told apart only by the hash."""
    _, manifest = ort_engines
    names = {a.steps: a.file for a in manifest.artifacts if a.stage == "prior_sampler"}
    assert sorted(names) == [10, 50]
    for steps, name in names.items():
        assert name.startswith(f"prior_sampler_{steps}-fp32-cpu-ort"), name
    assert engine_file_name(BASE, key_hash(BASE), 50).startswith("unet_50-fp16-sm87-")  # the same rule for plans


def test_an_engine_folder_given_as_bundle_is_named_in_good_english(ort_engines, tmp_path) -> None:
    from eeg2img_deploy.engines.build import build_engines
    from eeg2img_deploy.errors import ManifestError

    folder, _ = ort_engines
    with pytest.raises(ManifestError) as e:
        build_engines(folder, tmp_path / "out", backend="onnxruntime", ort_provider="cpu", progress=False)
    assert "is an engine folder (onnxruntime), not an export bundle" in str(e.value)  # was "a onnxruntime"
