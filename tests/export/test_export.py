"""``export`` on the tiny set: validated fp32 + fp16 graphs, a manifest written last, no-op re-runs,
refusal of changed or truncated files, and weights checked before a single file is written."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from eeg2img_deploy.errors import CheckpointError, ManifestError, WeightsNotFoundError
from eeg2img_deploy.export import bundle as bundle_module
from eeg2img_deploy.export.bundle import ExportSettings, export_bundle, hash_sources
from eeg2img_deploy.integrity import STAMP_NAME, verify_files
from eeg2img_deploy.manifest import (
    MANIFEST_NAME,
    LowLevelInfo,
    Manifest,
    Precision,
    read_manifest,
)
from eeg2img_deploy.weights import IPAdapterLocation, resolve_weights

ALL_STAGES = ["encoder", "prior", "prior_sampler", "unet", "vae_decoder", "taesd_decoder", "low_level_encoder", "vae_encoder",
              "text_encoders", "projector", "caption_prefill", "caption_decoder"]
FP32_ONLY = ("vae_decoder", "vae_encoder", "text_encoders")  # the SDXL VAE overflows fp16 both ways; prompts: see text_encoders.py
ONNX_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.INT64: "int64",
               onnx.TensorProto.UINT8: "uint8"}


def _mtimes(folder: Path) -> dict[str, int]:
    """Every file's mtime but the verification record's (a cache a no-op export may fill)."""
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir()) if p.name != STAMP_NAME}


def _copy(bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(bundle, out)
    return out


# ---- what a complete export holds ---------------------------------------------------------------------
def test_every_stage_exported_and_validated(tiny_bundle, tiny_export_settings):
    m = read_manifest(tiny_bundle)
    assert m.stages() == ALL_STAGES
    for stage in ALL_STAGES:
        want = [Precision.FP32] if stage in FP32_ONLY else [Precision.FP32, Precision.FP16]
        for steps in m.step_counts(stage) or [None]:
            assert m.precisions(stage, steps) == want, (stage, steps)
    assert m.step_counts("prior_sampler") == [50, 10]  # the paper's DDPM-50 and the follow-up's 10 steps
    assert {a.file for a in m.artifacts if a.stage == "prior_sampler"} == {
        "prior_sampler_50.onnx", "prior_sampler_50.fp16.onnx", "prior_sampler_10.onnx", "prior_sampler_10.fp16.onnx"}
    assert m.bundle.fp32_only_stages == FP32_ONLY
    assert m.bundle.low_level == LowLevelInfo(latent_convention="unscaled")
    assert m.sources["low_level"].found["architecture"]["generation"] == "refactor"
    from safetensors.numpy import load_file

    consts = load_file(str(tiny_bundle / m.constants_file))  # the low-level start image is CLIP-normalised
    np.testing.assert_allclose(consts["clip_image_mean"], [0.48145466, 0.4578275, 0.40821073])
    np.testing.assert_allclose(consts["clip_image_std"], [0.26862954, 0.26130258, 0.27577711])
    assert m.bundle.image_size == tiny_export_settings.image_size and m.bundle.max_batch == 4
    assert m.bundle.steps == (1, 4)
    for a in m.artifacts:
        errors = a.validation.max_rel_error
        assert set(errors) == {"batch1", "batch2"}, a.file
        assert max(errors.values()) <= a.validation.tolerance, (a.file, errors)
        assert a.validation.tolerance <= (1e-4 if a.precision is Precision.FP32 else 5e-2)
        assert (tiny_bundle / a.file).stat().st_size > 0
    verify_files(tiny_bundle, m)  # every recorded sha256 matches


def test_fp16_graphs_have_float32_edges_and_cast_inside(tiny_bundle):
    """Every graph's I/O has the fp32 graph's dtypes (one dtype per tensor that crosses stages); an fp16 graph
    casts its float inputs to float16 as their first node (but the timesteps and scales it keeps in fp32)."""
    m = read_manifest(tiny_bundle)
    fp32_kept = {"prior": {"t"}, "unet": {"timestep", "time_ids", "ip_scale"},
                 "prior_sampler": {"cond", "noise", "guidance"}}  # only its denoiser runs in fp16
    for a in m.artifacts:
        model = onnx.load(str(tiny_bundle / a.file), load_external_data=False)
        got = {v.name: ONNX_DTYPES[v.type.tensor_type.elem_type] for v in [*model.graph.input, *model.graph.output]}
        assert got == {t.name: t.dtype for t in (*a.inputs, *a.outputs)}, a.file  # the manifest tells the truth
        twin = m.artifact(a.stage, "fp32", a.steps)
        assert got == {t.name: t.dtype for t in (*twin.inputs, *twin.outputs)}, a.file  # the same edges as fp32
        assert "float16" not in got.values(), a.file
        if a.precision is Precision.FP16:
            casts = {n.input[0]: n.attribute[0].i for n in model.graph.node if n.op_type == "Cast"}
            for t in a.inputs:
                if t.dtype == "float32" and t.name not in fp32_kept.get(a.stage, set()):
                    assert casts.get(t.name) == onnx.TensorProto.FLOAT16, (a.file, t.name)
    # and the weights really are halved: fp16 files are about half the size
    for stage in ("encoder", "prior", "prior_sampler", "unet"):
        ratio = m.artifact(stage, "fp16").size_bytes / m.artifact(stage, "fp32").size_bytes
        assert 0.4 < ratio < 0.6, (stage, ratio)


def test_manifest_json_round_trip(tiny_bundle):
    m = read_manifest(tiny_bundle)
    assert Manifest.from_json(m.to_json()) == m
    assert json.loads((tiny_bundle / MANIFEST_NAME).read_text()) == m.to_dict()


def test_ip_scale_input_moves_the_unet_output(tiny_bundle):
    from eeg2img_deploy.export.onnx_io import ort_session, relative_error

    m = read_manifest(tiny_bundle)
    a = m.artifact("unet", "fp32")
    rng = np.random.default_rng(1)
    feeds = {
        t.name: rng.standard_normal([1 if isinstance(d, str) else d for d in t.shape]).astype(np.float32)
        for t in a.inputs
    }
    s = m.bundle.image_size
    feeds["timestep"] = np.array([999.0], np.float32)
    feeds["time_ids"] = np.array([[s, s, 0, 0, s, s]], np.float32)
    feeds["image_embeds"] = rng.uniform(-1, 1, (1, 1024)).astype(np.float32)
    sess = ort_session(tiny_bundle / a.file)
    out = {k: sess.run(None, {**feeds, "ip_scale": np.array([k], np.float32)})[0] for k in (0.0, 1.0)}
    change = relative_error(out[1.0], out[0.0].astype(np.float64))
    tol = a.validation.tolerance
    assert change > 100 * tol, f"ip_scale 0 -> 1 moves the UNet output by {change:.3g}, tolerance {tol:g}"


# ---- re-running ---------------------------------------------------------------------------------------
def test_unchanged_reexport_is_a_noop(tiny_bundle, tiny_export_settings, tiny_layout):
    before = _mtimes(tiny_bundle)
    t0 = time.perf_counter()
    m, exported = export_bundle(tiny_layout, tiny_bundle, tiny_export_settings, progress=False)
    seconds = time.perf_counter() - t0
    assert not exported
    assert seconds < 10, f"an up-to-date check took {seconds:.1f} s"
    assert m == read_manifest(tiny_bundle)
    assert _mtimes(tiny_bundle) == before


def test_changed_weights_change_the_hash_and_trigger_reexport(tiny_bundle, tiny_export_settings, tiny_dir, tiny_layout, tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    shutil.copytree(tiny_dir, weights, ignore=shutil.ignore_patterns("eeg"))
    layout = resolve_weights(weights)
    original = hash_sources(tiny_layout)
    assert {k: v["sha256"] for k, v in hash_sources(layout).items()} == {k: v["sha256"] for k, v in original.items()}

    state = torch.load(layout.prior, map_location="cpu", weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point() and v.ndim == 2)
    state[key] = state[key] + 1e-3
    torch.save(state, layout.prior)
    changed = hash_sources(layout)
    assert changed["prior"]["sha256"] != original["prior"]["sha256"]
    assert {k: v["sha256"] for k, v in changed.items() if k != "prior"} == {
        k: v["sha256"] for k, v in original.items() if k != "prior"
    }

    # A copy of the bundle made from the original weights: the changed prior must start an export
    # (stopped where the stage list is built, after the weights were loaded and before any write).
    out = _copy(tiny_bundle, tmp_path)
    before = _mtimes(out)

    class Started(Exception):
        pass

    def stop(*_a, **_k):
        raise Started

    monkeypatch.setattr(bundle_module, "build_stages", stop)
    with pytest.raises(Started):
        export_bundle(layout, out, tiny_export_settings, progress=False)
    assert _mtimes(out) == before
    # while the unchanged copy of the weights is up to date for the same bundle
    shutil.copyfile(tiny_layout.prior, layout.prior)
    _, exported = export_bundle(layout, out, tiny_export_settings, progress=False)
    assert not exported


# ---- refusing a damaged or interrupted bundle ------------------------------------------------------------
def test_truncated_onnx_is_refused(tiny_bundle, tmp_path):
    from eeg2img_deploy.runtime.pipeline import Pipeline

    out = _copy(tiny_bundle, tmp_path)
    path = out / "unet.onnx"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ManifestError, match=r"unet\.onnx"):
        verify_files(out, read_manifest(out))
    with pytest.raises(ManifestError, match=r"unet\.onnx"):
        Pipeline.from_bundle(out)


def test_manifest_hash_mismatch_is_refused(tiny_bundle, tmp_path):
    from eeg2img_deploy.runtime.pipeline import Pipeline

    out = _copy(tiny_bundle, tmp_path)
    d = json.loads((out / MANIFEST_NAME).read_text())
    enc = next(a for a in d["artifacts"] if a["file"] == "encoder.onnx")
    enc["sha256"] = "0" * 64
    (out / MANIFEST_NAME).write_text(json.dumps(d))
    with pytest.raises(ManifestError, match=r"encoder\.onnx does not match the sha256"):
        verify_files(out, read_manifest(out))
    with pytest.raises(ManifestError, match=r"encoder\.onnx"):
        Pipeline.from_bundle(out)


def test_interrupted_export_leaves_the_bundle_as_it_was(tiny_bundle, tiny_export_settings, tiny_layout, tmp_path, monkeypatch):
    out = _copy(tiny_bundle, tmp_path)
    before = _mtimes(out)
    real = bundle_module.export_onnx
    traced = []

    def export_onnx(stage, precision, path, example):
        traced.append(stage.name)
        if stage.name == "unet":
            raise RuntimeError("interrupted while tracing the unet")
        return real(stage, precision, path, example)

    monkeypatch.setattr(bundle_module, "export_onnx", export_onnx)
    quick = dataclasses.replace(tiny_export_settings, precisions=(Precision.FP32,), validate=False, fused_prior_steps=())
    with pytest.raises(RuntimeError, match="interrupted"):
        export_bundle(tiny_layout, out, quick, force=True, progress=False)
    assert traced == ["encoder", "prior", "unet"]
    assert _mtimes(out) == before  # the new graphs stayed in the staging folder, which is gone
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != STAMP_NAME], "staging leftovers"
    verify_files(out, read_manifest(out))


# ---- weights checked before anything is written ----------------------------------------------------------
def _assert_nothing_written(out: Path, existed: bool) -> None:
    if existed:
        assert list(out.iterdir()) == []
    else:
        assert not out.exists()


def test_missing_prior_fails_before_writing(tiny_layout, tiny_export_settings, tmp_path):
    out = tmp_path / "out"
    layout = dataclasses.replace(tiny_layout, prior=tmp_path / "no-such-prior.pt")
    with pytest.raises(WeightsNotFoundError, match="no-such-prior.pt"):
        export_bundle(layout, out, tiny_export_settings, progress=False)
    _assert_nothing_written(out, existed=False)


def test_misshaped_prior_key_fails_before_writing(tiny_layout, tiny_export_settings, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    state = torch.load(tiny_layout.prior, map_location="cpu", weights_only=True)
    key = next(k for k, v in state.items() if v.ndim == 2)
    rows, cols = state[key].shape
    state[key] = torch.zeros(rows, cols + 1)
    bad = tmp_path / "prior.pt"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match=rf"misshaped keys: {key.replace('.', '[.]')} expected \[{rows}, {cols}\], found \[{rows}, {cols + 1}\]"):
        export_bundle(dataclasses.replace(tiny_layout, prior=bad), out, tiny_export_settings, progress=False)
    _assert_nothing_written(out, existed=True)


def test_wrong_size_ip_adapter_fails_before_writing(tiny_layout, tiny_export_settings, tmp_path):
    from safetensors.numpy import load_file, save_file

    out = tmp_path / "out"
    state = load_file(str(tiny_layout.ip_adapter.file))
    rows = state["image_proj.proj.weight"].shape[0]
    state["image_proj.proj.weight"] = np.zeros((rows, 768), np.float32)  # a ViT-L adapter, not ViT-H
    folder = tmp_path / "ip"
    folder.mkdir()
    name = tiny_layout.ip_adapter.weight_name
    save_file(state, str(folder / name))
    layout = dataclasses.replace(tiny_layout, ip_adapter=IPAdapterLocation(str(folder), "", name))
    with pytest.raises(CheckpointError, match=r"image_proj\.proj\.weight is \[\d+, 768\]"):
        export_bundle(layout, out, tiny_export_settings, progress=False)
    _assert_nothing_written(out, existed=False)


@pytest.mark.parametrize("size", [100, 0, -64, 65])
def test_settings_reject_bad_image_sizes(size):
    with pytest.raises(ValueError, match="multiple of 64"):
        ExportSettings(image_size=size)


def test_settings_reject_bad_batch_and_steps():
    with pytest.raises(ValueError, match="max-batch"):
        ExportSettings(max_batch=0)
    with pytest.raises(ValueError, match="steps"):
        ExportSettings(steps=(1, 8))
