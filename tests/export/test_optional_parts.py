"""``export`` of a weights folder without each optional part (low-level encoder, TAESDXL, GIT, PixelProjector),
and an export that fails leaves nothing half-written (issue 23, bug 1: a folder without ``low-level/`` crashed in
the card writer after 21 graphs, with no manifest, and crashed again on every re-run)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
from support import run_main

pytest.importorskip("torch")
pytest.importorskip("onnx")

from eeg2img_deploy.cards import CARD_NAME
from eeg2img_deploy.export import bundle as bundle_module
from eeg2img_deploy.export.bundle import export_bundle
from eeg2img_deploy.manifest import MANIFEST_NAME, Precision, read_manifest

# the layout field of each optional part, the manifest sources it adds, the stages it adds
OPTIONAL = {
    "low_level": ({"low_level"}, {"low_level_encoder", "vae_encoder"}),
    "taesd": ({"taesd"}, {"taesd_decoder"}),
    "git": ({"git", "projector"}, {"projector", "caption_prefill", "caption_decoder"}),  # captions need both
    "projector": ({"git", "projector"}, {"projector", "caption_prefill", "caption_decoder"}),
}
REQUIRED_SOURCES = {"encoder", "prior", "sdxl", "ip_adapter"}
FOLDERS = {"low_level": "low-level", "taesd": "taesdxl", "git": "git-large-coco", "projector": "pixel-projector"}


@pytest.fixture
def untraced(monkeypatch, tiny_export_settings):
    """Export with tracing replaced by a placeholder file: everything else (loading, manifest, card) is real."""

    def export_onnx(stage, precision, path, example):
        Path(path).write_bytes(f"{stage.name} {precision.value}".encode())
        return 0.0

    monkeypatch.setattr(bundle_module, "export_onnx", export_onnx)
    monkeypatch.setattr(bundle_module, "check_onnx", lambda *a, **k: None)
    return dataclasses.replace(tiny_export_settings, precisions=(Precision.FP32,), validate=False, fused_prior_steps=())


@pytest.mark.parametrize("part", list(OPTIONAL))
def test_export_without_each_optional_part(tiny_layout, untraced, tmp_path, part):
    sources, stages = OPTIONAL[part]
    out = tmp_path / "bundle"
    m, exported = export_bundle(dataclasses.replace(tiny_layout, **{part: None}), out, untraced, progress=False)
    assert exported
    assert read_manifest(out) == m
    assert set(m.sources) == REQUIRED_SOURCES | (set(OPTIONAL) | {"git", "projector"}) - sources
    assert all(v.sha256 for v in m.sources.values()), m.sources
    assert not stages & set(m.stages()) and "unet" in m.stages()
    assert (m.bundle.low_level is None) == (part == "low_level")
    card = (out / CARD_NAME).read_text()
    rows = card.split("## Sources and licences", 1)[1].split("## How it was made", 1)[0]
    assert sum(line.startswith("| ") and "sha256" not in line for line in rows.splitlines()) == len(m.sources)
    # and a re-run finds it up to date instead of failing again
    again, exported = export_bundle(dataclasses.replace(tiny_layout, **{part: None}), out, untraced, progress=False)
    assert not exported and again == m


def test_real_export_of_a_folder_without_optional_parts_runs(monkeypatch, capsys, tiny_dir, tiny_eeg, tmp_path):
    """The way a user meets it: a weights folder holding only the required parts, exported by the CLI
    (traced for real, fp32 only to keep it short), then run by the lean runtime."""
    from eeg2img_deploy.runtime.pipeline import Pipeline

    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("encoder", "prior", "sdxl-turbo", "ip-adapter"):
        os.symlink(tiny_dir / name, weights / name)
    out = tmp_path / "bundle"
    args = ["export", "--weights", weights, "--out", out, "--precision", "fp32", "--no-validate",
            "--fused-prior-steps", "none"]
    code, stdout, err = run_main(monkeypatch, capsys, args)
    assert code == 0, err
    m = read_manifest(out)
    assert set(m.sources) == REQUIRED_SOURCES
    assert m.stages() == ["encoder", "prior", "unet", "vae_decoder", "text_encoders"]
    assert json.loads((out / MANIFEST_NAME).read_text())["sources"] == {k: s.to_dict() for k, s in m.sources.items()}
    code, stdout, err = run_main(monkeypatch, capsys, args)
    assert code == 0 and "up to date" in stdout, err
    pipe = Pipeline.from_bundle(out)
    res = pipe(tiny_eeg[:1], np.array([8]), 0, steps=1, prior_steps=2)
    assert res.images.shape == (1, m.bundle.image_size, m.bundle.image_size, 3)
    assert res.images.std() > 1  # a real image, not a constant


# ---- a failed export leaves nothing half-written ------------------------------------------------------
class Stop(Exception):
    pass


def _fail_in(monkeypatch, name: str) -> None:
    def fail(*_a, **_k):
        raise Stop(name)

    monkeypatch.setattr(bundle_module, name, fail)


def test_failed_export_into_a_new_folder_leaves_no_folder(tiny_layout, untraced, tmp_path, monkeypatch):
    out = tmp_path / "new" / "bundle"
    _fail_in(monkeypatch, "render_card")  # after every graph was made: where bug 1 left 21 graphs and no manifest
    with pytest.raises(Stop):
        export_bundle(tiny_layout, out, untraced, progress=False)
    assert list(tmp_path.iterdir()) == []  # neither the bundle folder nor the folder above it, which it made
