"""``build-engines --backend onnxruntime`` on the real tiny export: same images, no-op rebuilds, and a
clear error for TensorRT where it is not installed.

Uses the real tiny bundle of tests/conftest.py (``onnx_bundle`` here is the small synthetic one).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from fakes import remove_tensorrt

from eeg2img_deploy.engines.build import build_engines
from eeg2img_deploy.manifest import MANIFEST_NAME, Backend, read_manifest
from eeg2img_deploy.runtime.pipeline import Pipeline

SUBJECT = 8
SEED = 2


def _images(folder, eeg, **kw):
    pipe = Pipeline.from_bundle(folder, **kw)
    try:
        return pipe(eeg, SUBJECT, SEED, prior_steps=4)
    finally:
        pipe.close()


def test_engine_folder_gives_the_bundle_images(tiny_bundle, ort_engines, tiny_eeg):
    out, manifest = ort_engines
    assert manifest.backend is Backend.ONNXRUNTIME and read_manifest(out) == manifest
    bundle = read_manifest(tiny_bundle)
    assert manifest.stages() == bundle.stages()
    assert all(a.engine is not None for a in manifest.artifacts)
    assert manifest.step_counts("prior_sampler") == [50, 10]  # one fused prior model per step count
    eeg = tiny_eeg[:2]
    a, b = _images(tiny_bundle, eeg), _images(out, eeg)
    diff = np.abs(a.images.astype(int) - b.images).max()
    print(f"\nonnxruntime engines vs bundle: max |diff| {diff} (uint8)")
    assert diff <= 1
    np.testing.assert_allclose(a.image_embeds, b.image_embeds, atol=1e-4)
    c = _images(out, eeg, vae="tiny")  # the tiny decoder is built too
    assert c.images.shape == a.images.shape


def test_fused_prior_runs_from_the_engine_folder(tiny_bundle, ort_engines, tiny_eeg):
    out, _ = ort_engines
    eeg = tiny_eeg[:2]
    pipe = Pipeline.from_bundle(out)
    try:
        fused = pipe(eeg, SUBJECT, SEED, prior_steps=10)
        stepwise = pipe(eeg, SUBJECT, SEED, prior_steps=10, prior_graph="stepwise")
    finally:
        pipe.close()
    assert fused.prior_graph == "fused" and pipe.sessions["prior_sampler@10"].artifact.steps == 10
    np.testing.assert_allclose(fused.image_embeds, stepwise.image_embeds, atol=1e-5, rtol=0)


def test_second_build_is_a_noop(tiny_bundle, ort_engines):
    out, first = ort_engines
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    manifest_text = (out / MANIFEST_NAME).read_text()
    second = build_engines(tiny_bundle, out, backend="onnxruntime", ort_provider="cpu", progress=False)
    assert second == first
    assert (out / MANIFEST_NAME).read_text() == manifest_text
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps


def test_cli_tensorrt_without_tensorrt_fails_clearly(tiny_bundle, tmp_path, monkeypatch, capsys):
    from eeg2img_deploy.cli import main

    remove_tensorrt(monkeypatch)
    out = tmp_path / "trt"
    monkeypatch.setattr(sys, "argv", ["eeg2img-deploy", "build-engines", "--bundle", str(tiny_bundle),
                                      "--out", str(out), "--backend", "tensorrt"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "eeg2img-deploy[tensorrt-cu12]" in err and "--backend onnxruntime" in err, err
    assert not out.exists() or not any(out.iterdir()), "nothing is written when TensorRT is missing"


def test_engine_folder_runs_the_low_level_path(tiny_bundle, ort_engines, tiny_eeg):
    out, manifest = ort_engines
    assert {"low_level_encoder", "vae_encoder"} <= set(manifest.stages())
    runs = []
    for folder in (tiny_bundle, out):
        pipe = Pipeline.from_bundle(folder, low_level=True)
        try:
            runs.append(pipe(tiny_eeg[:1], SUBJECT, SEED, steps=4, prior_steps=4, low_level=True, strength=0.5))
        finally:
            pipe.close()
    assert np.abs(runs[0].images.astype(int) - runs[1].images).max() <= 2
    np.testing.assert_allclose(runs[0].low_level_latents, runs[1].low_level_latents, atol=1e-4)
