"""The manifest contract and the atomic file helpers (no torch, no onnx)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from eeg2img_deploy.errors import ManifestError
from eeg2img_deploy.fileio import atomic_path, sha256_file
from eeg2img_deploy.integrity import verify_files
from eeg2img_deploy.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    Artifact,
    AxisRange,
    Backend,
    BundleSettings,
    EEGInfo,
    EncoderInfo,
    EngineInfo,
    EngineKey,
    EngineSettings,
    Manifest,
    OnnxRuntimeSettings,
    ParentInfo,
    Precision,
    Provider,
    ServedModels,
    ServedStage,
    ShapeRange,
    Source,
    Stage,
    TensorRTEPOptions,
    TensorRTFlags,
    TensorRTSettings,
    TensorSpec,
    Validation,
    read_manifest,
    write_manifest,
)


def _trt_key(stage: str, sample: ShapeRange) -> EngineKey:
    return EngineKey(backend=Backend.TENSORRT, stage=stage, onnx_sha256="0" * 64, precision=Precision.FP16,
                     profile={"sample": sample}, builder_flags=TensorRTFlags(builder_optimization_level=3, workspace_bytes=None),
                     tensorrt_version="10.3.0", compute_capability="8.7", gpu_name="Orin")


def make_folder(folder: Path, backend: Backend = Backend.ONNX) -> Manifest:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "encoder.onnx").write_bytes(b"graph-bytes" * 100)
    (folder / "unet.fp16.onnx").write_bytes(b"other-graph" * 50)
    (folder / "unet.fp16.onnx.data").write_bytes(b"\x00\x01" * 64)
    (folder / "constants.safetensors").write_bytes(b"constants")
    enc = Artifact(
        stage="encoder", precision=Precision.FP32, file="encoder.onnx", sha256=sha256_file(folder / "encoder.onnx"),
        size_bytes=1100,
        inputs=(TensorSpec("eeg", "float32", ("batch", 63, 250)), TensorSpec("subject_ids", "int64", ("batch",))),
        outputs=(TensorSpec("eeg_embeds", "float32", ("batch", 1024)),),
        validation=Validation(1.5, {"batch1": 1e-6}, 1e-4, "max|ort - torch_fp32| / max|torch_fp32|"),
    )
    unet = Artifact(
        stage="unet", precision=Precision.FP16, file="unet.fp16.onnx", sha256=sha256_file(folder / "unet.fp16.onnx"),
        size_bytes=678, inputs=(TensorSpec("sample", "float16", ("batch", 4, 16, 16)),),
        outputs=(TensorSpec("noise_pred", "float16", ("batch", 4, 16, 16)),),
        data_file="unet.fp16.onnx.data", data_sha256=sha256_file(folder / "unet.fp16.onnx.data"),
        engine=EngineInfo(key=_trt_key("unet", ShapeRange((1, 4, 16, 16), (1, 4, 16, 16), (4, 4, 16, 16))),
                          key_hash="abc", tensorrt_version="10.3.0", compute_capability="8.7"),
    )
    m = Manifest(
        backend=backend, artifacts=(enc, unet), constants_file="constants.safetensors",
        constants_sha256=sha256_file(folder / "constants.safetensors"), eeg=EEGInfo(channels=("Fp1", "Fp2"), n_times=250),
        bundle=BundleSettings(image_size=128, max_batch=4, axes={"batch": AxisRange(1, 1, 4)}, num_subjects=10),
        sources={"prior": Source("00", file_name="diffusion_prior.pt", found={"cond_dim": 1024})}, libraries={"onnx": "1.17"},
    )
    write_manifest(folder, m)
    return m


WRITTEN_BEFORE = Path(__file__).parent / "data" / "written_before"


@pytest.mark.parametrize("name", ["bundle", "tensorrt", "onnxruntime"])
def test_manifests_written_before_read_back_byte_equal(name):
    """manifest.json as main wrote it before axes, engine keys, validation, sources and TensorRT EP options were
    typed (f5941e5: a bundle with the low-level and caption paths, TensorRT engines from before the tf32 flag,
    onnxruntime engines for the TensorRT EP; artifacts trimmed): the same bytes when written again, typed when read."""
    text = (WRITTEN_BEFORE / f"{name}.json").read_text()
    m = Manifest.from_json(text)
    assert m.to_json() == text
    assert m.bundle.axes["batch"] == AxisRange(1, 1, 4) and m.bundle.axes["batch2"] == AxisRange(2, 2, 8)
    assert all(isinstance(s, Source) and len(s.sha256) == 64 for s in m.sources.values())
    for a in m.artifacts:
        assert (a.validation.worst() is not None) == (name == "bundle"), a.label()
        if a.engine is not None:
            from eeg2img_deploy.engines.cache_key import key_hash

            assert key_hash(a.engine.key) == a.engine.key_hash, a.label()  # the hash that named the file
            assert a.engine.key.stage == a.stage and a.engine.key.precision is a.precision
    if name == "tensorrt":
        unet = m.artifact("unet", "fp16").engine
        assert unet.key.tensorrt.tf32 is None and unet.key.profile["sample"].max[0] == 4
    if name == "onnxruntime":
        assert m.engine.onnxruntime.tensorrt_ep == TensorRTEPOptions()
        assert m.artifacts[0].engine.key.onnxruntime.provider is Provider.CUDA


@pytest.mark.parametrize("batch, says", [
    ({"min": 2, "opt": 1, "max": 4}, "min 2, opt 1, max 4 are not 0 < min <= opt <= max"),
    ({"min": 0, "opt": 1, "max": 4}, "min 0, opt 1, max 4 are not 0 < min <= opt <= max"),
    ({"min": 1, "opt": 1}, "has no field 'max'"),
    ({"min": 1, "opt": 1, "max": 4, "step": 1}, "has unknown keys ['step']"),
])
def test_a_malformed_axis_range_names_the_folder_the_field_and_the_fix(tmp_path, batch, says):
    make_folder(tmp_path)
    d = json.loads((tmp_path / MANIFEST_NAME).read_text())
    d["settings"]["axes"]["batch"] = batch
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(d))
    with pytest.raises(ManifestError) as e:
        read_manifest(tmp_path)
    message = str(e.value)
    assert "\n" not in message and str(tmp_path / MANIFEST_NAME) in message and "settings.axes.batch" in message, message
    assert says in message and "`eeg2img-deploy export`" in message, message


def test_round_trip(tmp_path):
    m = make_folder(tmp_path)
    assert Manifest.from_json(m.to_json()) == m
    assert read_manifest(tmp_path) == m
    back = read_manifest(tmp_path)
    assert back.artifacts[1].engine.key.profile["sample"].max == (4, 4, 16, 16)
    engine = json.loads(m.to_json())["artifacts"][1]["engine"]
    assert engine["profile"] == engine["key"]["profile"] == {"sample": {"min": [1, 4, 16, 16], "opt": [1, 4, 16, 16],
                                                                        "max": [4, 4, 16, 16]}}
    assert back.artifacts[1].engine.key.tensorrt.weight_streaming is False
    assert back.artifacts[0].inputs[0].shape == ("batch", 63, 250)  # tuples, not JSON lists
    assert back.stages() == ["encoder", "unet"] and back.precisions("unet") == [Precision.FP16]
    assert json.loads(m.to_json())["format"] == "eeg2img-deploy"


def _edited(tmp_path: Path, **changes) -> str:
    d = json.loads((tmp_path / MANIFEST_NAME).read_text())
    d.update(changes)
    return json.dumps(d)


def test_unknown_fields_rejected(tmp_path):
    make_folder(tmp_path)
    with pytest.raises(ManifestError, match=r"unknown fields \['shiny_new_field'\]"):
        Manifest.from_json(_edited(tmp_path, shiny_new_field=1))
    d = json.loads((tmp_path / MANIFEST_NAME).read_text())
    d["artifacts"][0]["extra"] = True
    with pytest.raises(ManifestError, match=r"malformed: artifact encoder.onnx has unknown keys \['extra'\]"):
        Manifest.from_json(json.dumps(d))
    del d["artifacts"][0]["extra"]
    d["artifacts"][0]["validation"]["shiny"] = 1
    with pytest.raises(ManifestError, match=r"malformed: artifact encoder.onnx's validation has unknown keys \['shiny'\]"):
        Manifest.from_json(json.dumps(d))


def test_wrong_format_rejected(tmp_path):
    make_folder(tmp_path)
    with pytest.raises(ManifestError, match="not an eeg2img-deploy manifest"):
        Manifest.from_json(_edited(tmp_path, format="onnx-bundle"))
    with pytest.raises(ManifestError, match=f"format version {FORMAT_VERSION + 1} is not the supported {FORMAT_VERSION}"):
        Manifest.from_json(_edited(tmp_path, format_version=FORMAT_VERSION + 1))
    with pytest.raises(ManifestError, match="not valid JSON"):
        Manifest.from_json('{"format": "eeg2img-deploy", ')
    with pytest.raises(ManifestError, match="malformed"):
        Manifest.from_json(_edited(tmp_path, backend="pytorch"))


def test_missing_manifest_names_the_fix(tmp_path):
    with pytest.raises(ManifestError, match="is not a folder"):
        read_manifest(tmp_path / "nothing")
    with pytest.raises(ManifestError, match="eeg2img-deploy export"):
        read_manifest(tmp_path)


def test_artifact_error_names_the_fix(tmp_path):
    m = make_folder(tmp_path)
    assert m.artifact("unet", "fp16").file == "unet.fp16.onnx"
    with pytest.raises(ManifestError) as e:
        m.artifact("unet", Precision.FP32)
    msg = str(e.value)
    assert "stage unet in fp32 is not" in msg and "encoder/fp32, unet/fp16" in msg
    assert "eeg2img-deploy export --precision fp32" in msg and "build engines" not in msg
    with pytest.raises(ManifestError, match="and build engines again"):
        m.replace(backend=Backend.TENSORRT).artifact("vae_decoder", "fp32")


@pytest.mark.parametrize("name", ["encoder.onnx", "unet.fp16.onnx.data", "constants.safetensors"])
def test_verify_files_detects_a_changed_byte(tmp_path, name):
    m = make_folder(tmp_path)
    verify_files(tmp_path, m)
    path = tmp_path / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=rf"{name.replace('.', '[.]')} does not match the sha256"):
        verify_files(tmp_path, m)
    if name != "constants.safetensors":  # checking other stages only skips the changed file
        other = "unet" if name.startswith("encoder") else "encoder"
        verify_files(tmp_path, m, stages=[other])


def test_verify_files_detects_a_missing_file(tmp_path):
    m = make_folder(tmp_path)
    (tmp_path / "unet.fp16.onnx").unlink()
    with pytest.raises(ManifestError, match=r"unet\.fp16\.onnx is named in the manifest but missing"):
        verify_files(tmp_path, m)


def test_atomic_path_leaves_no_file_when_the_block_raises(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert not target.exists()
    assert list((tmp_path / "sub").iterdir()) == [], "no .partial leftovers"

    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old", "an existing file is kept as it was"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_settings_are_typed_and_the_json_keeps_its_shape(tmp_path):
    m = make_folder(tmp_path)
    d = json.loads(m.to_json())
    assert d["settings"]["max_batch"] == 4 and d["settings"]["num_subjects"] == 10  # one flat "settings" object
    assert d["eeg"]["channels"] == ["Fp1", "Fp2"] and d["eeg"]["whitening"] is False
    trt = m.replace(
        backend=Backend.TENSORRT,
        engine=EngineSettings(tensorrt=TensorRTSettings(preset="jetson-orin", cuda_graphs=True,
                                                        weight_streaming_budget_bytes={"unet": 7})),
        parent=ParentInfo(manifest_sha256="ab", bundle="tiny", path="../../export/tiny"),
    )
    d = json.loads(trt.to_json())
    assert d["settings"]["engines"]["cuda_graphs"] is True and d["parent"]["path"] == "../../export/tiny"
    back = Manifest.from_json(trt.to_json())
    assert back == trt
    assert back.engine.tensorrt.weight_streaming_budget_bytes == {"unet": 7} and back.bundle.max_batch == 4
    ort = m.replace(engine=EngineSettings(onnxruntime=OnnxRuntimeSettings("CPUExecutionProvider", "all")))
    assert "tensorrt_ep" not in json.loads(ort.to_json())["settings"]["onnxruntime"]
    assert Manifest.from_json(ort.to_json()) == ort


def test_a_manifest_written_before_the_typed_settings_still_reads(tmp_path):
    """The JSON of format version 1 as the untyped writer wrote it (a bundle made earlier must still open)."""
    m = make_folder(tmp_path)
    d = json.loads(m.to_json())
    d["settings"] = {"fingerprint": "f", "image_size": 128, "latent_channels": 4, "max_batch": 4,
                     "axes": {"batch": {"min": 1, "opt": 1, "max": 4}}, "opset": 18, "steps": [1, 4], "ip_scale": 1.0,
                     "encoder_variant": {"token_slice": "paper", "positional_embedding": False}, "num_subjects": 10,
                     "fp32_only_stages": ["vae_decoder"],
                     "onnxruntime": {"provider": "CPUExecutionProvider", "graph_optimization_level": "all"}}
    d["parent"] = {"manifest_sha256": "ab", "bundle": "tiny"}
    back = Manifest.from_json(json.dumps(d))
    assert back.bundle.steps == (1, 4) and back.bundle.fp32_only_stages == (Stage.VAE_DECODER,)
    assert back.engine.onnxruntime.provider is Provider.CPU and back.engine.tensorrt is None
    assert back.parent.path is None and back.parent.folder(tmp_path) is None
    assert back.bundle.encoder == EncoderInfo()  # written before the encoder kinds: the paper's ATM-S
    assert {k: v for k, v in json.loads(back.to_json())["settings"].items() if k != "encoder"} == d["settings"]


def test_repo_json_round_trip(tmp_path):
    """triton-repo's repo.json, as the eeg2img model in Triton reads it: typed, the JSON unchanged."""
    served = ServedModels("tiny", {"prior_sampler@50": ServedStage("prior_sampler_50", Stage.PRIOR_SAMPLER,
                                                                   Precision.FP16, 50),
                                   "unet": ServedStage("unet", Stage.UNET, Precision.FP32)})
    served.write(tmp_path)
    assert ServedModels.read(tmp_path) == served
    assert json.loads((tmp_path / "repo.json").read_text())["models"]["unet"] == {
        "model": "unet", "stage": "unet", "precision": "fp32", "steps": None}


def test_the_onnxruntime_provider_is_one_enum_read_in_either_spelling():
    """Engine folders record onnxruntime's name; the settings hold the --provider enum, and write the name back."""
    assert OnnxRuntimeSettings("CUDAExecutionProvider", "basic").provider is Provider.CUDA
    assert OnnxRuntimeSettings("cuda", "basic") == OnnxRuntimeSettings(Provider.CUDA, "basic")
    d = EngineSettings(onnxruntime=OnnxRuntimeSettings("tensorrt", "basic")).to_dict()
    assert d["onnxruntime"]["provider"] == "TensorrtExecutionProvider"
    with pytest.raises(ManifestError, match="settings.onnxruntime.provider DmlExecutionProvider is not one of"):
        OnnxRuntimeSettings("DmlExecutionProvider", "basic")


def test_unknown_settings_key_is_refused_and_unknown_stage_kept(tmp_path):
    make_folder(tmp_path)
    d = json.loads((tmp_path / MANIFEST_NAME).read_text())
    d["settings"]["shiny"] = 1
    with pytest.raises(ManifestError, match=r"settings has unknown keys \['shiny'\]"):
        Manifest.from_json(json.dumps(d))
    d = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert "depth_decoder" not in set(Stage)
    d["artifacts"][0]["stage"] = "depth_decoder"  # a stage a newer toolkit added (caption_decoder once was one)
    back = Manifest.from_json(json.dumps(d))
    assert back.artifacts[0].stage == "depth_decoder" and not isinstance(back.artifacts[0].stage, Stage)
    assert back.stages() == ["unet", "depth_decoder"]
    assert isinstance(back.artifacts[1].stage, Stage) and f"{back.artifacts[1].stage}" == "unet"


def test_parent_folder_resolves_relative_to_the_engine_folder(tmp_path):
    bundle = tmp_path / "export" / "tiny"
    make_folder(bundle)
    parent = ParentInfo(manifest_sha256="ab", bundle="tiny", path="../../export/tiny")
    assert parent.folder(tmp_path / "engines" / "tiny") == bundle
    assert parent.folder(tmp_path / "elsewhere") is None


def test_recommended_run_settings_are_written_only_when_given():
    from eeg2img_deploy.manifest import RecommendedRun

    plain = BundleSettings(image_size=128, max_batch=4, axes={}, num_subjects=None)
    assert "recommended" not in plain.to_dict() and BundleSettings.from_dict(plain.to_dict()) == plain
    rec = dataclasses.replace(plain, recommended=RecommendedRun(prior_steps=10, guidance=2.0, steps=4, source="x"))
    d = json.loads(json.dumps(rec.to_dict()))
    assert d["recommended"] == {"prior_steps": 10, "guidance": 2.0, "steps": 4, "source": "x"}
    assert BundleSettings.from_dict(d) == rec
    d["recommended"]["cfg"] = 3
    with pytest.raises(ManifestError, match=r"settings.recommended has unknown keys \['cfg'\]"):
        BundleSettings.from_dict(d)
