"""Resolving a weights folder into its components."""

from __future__ import annotations

from pathlib import Path

import pytest

from eeg2img_deploy.errors import WeightsNotFoundError
from eeg2img_deploy.weights import IPAdapterLocation, resolve_weights


@pytest.fixture(autouse=True)
def no_hf_cache(monkeypatch):
    # a developer's real Hugging Face cache must not satisfy a missing component
    monkeypatch.setattr("eeg2img_deploy.weights.hf_cache_snapshot", lambda repo: None)


def fake_layout(root: Path, *, skip: str = "") -> Path:
    """A weights folder with every component present as an empty placeholder (no torch needed)."""
    if skip != "encoder":
        (root / "encoder").mkdir(parents=True)
        (root / "encoder" / "atms_sub-08.pth").write_bytes(b"")
    if skip != "prior":
        (root / "prior").mkdir(parents=True)
        (root / "prior" / "diffusion_prior.pt").write_bytes(b"")
    if skip != "sdxl":
        (root / "sdxl-turbo").mkdir(parents=True)
        (root / "sdxl-turbo" / "model_index.json").write_text("{}")
    if skip != "ip":
        (root / "ip-adapter" / "sdxl_models").mkdir(parents=True)
        (root / "ip-adapter" / "sdxl_models" / "ip-adapter_sdxl_vit-h.safetensors").write_bytes(b"")
    return root


def test_finds_the_tiny_layout(tiny_dir):
    layout = resolve_weights(tiny_dir)
    assert layout.encoder == tiny_dir / "encoder" / "atms_sub-08.pth"
    assert layout.prior == tiny_dir / "prior" / "diffusion_prior.pt"
    assert layout.sdxl == tiny_dir / "sdxl-turbo"
    assert layout.ip_adapter == IPAdapterLocation(str(tiny_dir / "ip-adapter"), "sdxl_models", "ip-adapter_sdxl_vit-h.safetensors")
    assert layout.taesd == tiny_dir / "taesdxl"
    assert layout.low_level == tiny_dir / "low-level" / "best_encoder.pth"
    assert set(layout.describe()) == {"encoder", "prior", "sdxl", "ip_adapter", "taesd", "low_level", "git", "projector"}


def test_layout_without_taesd(tmp_path):
    layout = resolve_weights(fake_layout(tmp_path / "w"))
    assert layout.taesd is None and layout.describe()["taesd"] is None


def test_overrides(tmp_path):
    root = fake_layout(tmp_path / "w")
    other = tmp_path / "other"
    other.mkdir()
    (other / "my_encoder.pth").write_bytes(b"")
    (other / "best.pth").write_bytes(b"")
    (other / "ip.bin").write_bytes(b"")
    (other / "sdxl").mkdir()
    (other / "sdxl" / "model_index.json").write_text("{}")
    (other / "taesd").mkdir()
    (other / "taesd" / "config.json").write_text("{}")
    layout = resolve_weights(root, encoder=other / "my_encoder.pth", prior=other / "best.pth", sdxl=other / "sdxl",
                             ip_adapter=other / "ip.bin", taesd=other / "taesd")
    assert layout.encoder == other / "my_encoder.pth" and layout.prior == other / "best.pth"
    assert layout.sdxl == other / "sdxl" and layout.taesd == other / "taesd"
    assert layout.ip_adapter.file == other / "ip.bin"
    # overrides alone, without --weights
    alone = resolve_weights(None, encoder=root / "encoder", prior=root / "prior" / "diffusion_prior.pt",
                            sdxl=root / "sdxl-turbo", ip_adapter=root / "ip-adapter")
    assert alone.encoder == root / "encoder" / "atms_sub-08.pth"
    assert alone.ip_adapter.subfolder == "sdxl_models"


@pytest.mark.parametrize("skip, flag", [("encoder", "--encoder"), ("prior", "--prior"), ("sdxl", "--sdxl"),
                                        ("ip", "--ip-adapter")])
def test_missing_component_names_its_flag(tmp_path, skip, flag):
    root = fake_layout(tmp_path / "w", skip=skip)
    with pytest.raises(WeightsNotFoundError, match=flag):
        resolve_weights(root)


def test_missing_override_and_bad_folders(tmp_path):
    root = fake_layout(tmp_path / "w")
    with pytest.raises(WeightsNotFoundError, match="--encoder"):
        resolve_weights(root, encoder=tmp_path / "nope.pth")
    with pytest.raises(WeightsNotFoundError, match="model_index.json"):
        resolve_weights(root, sdxl=tmp_path)
    with pytest.raises(WeightsNotFoundError, match="config.json"):
        resolve_weights(root, taesd=tmp_path)
    with pytest.raises(WeightsNotFoundError, match="not a folder"):
        resolve_weights(tmp_path / "missing")
    with pytest.raises(WeightsNotFoundError, match="--prior"):
        resolve_weights(None, encoder=root / "encoder")


def test_two_checkpoints_in_encoder_folder(tmp_path):
    root = fake_layout(tmp_path / "w")
    (root / "encoder" / "atms_sub-01.pth").write_bytes(b"")
    with pytest.raises(WeightsNotFoundError, match="several EEG encoder checkpoints.*--encoder"):
        resolve_weights(root)
    # other files (notes, logs) do not count
    (root / "encoder" / "atms_sub-01.pth").unlink()
    (root / "encoder" / "README.txt").write_text("x")
    assert resolve_weights(root).encoder.name == "atms_sub-08.pth"


def test_low_level_encoder_is_optional_and_overridable(tmp_path):
    root = fake_layout(tmp_path / "w")
    assert resolve_weights(root).low_level is None  # no low-level/ folder: the main path only
    (root / "low-level").mkdir()
    (root / "low-level" / "80.pth").write_bytes(b"")
    assert resolve_weights(root).low_level == root / "low-level" / "80.pth"
    other = tmp_path / "best_encoder.pth"
    other.write_bytes(b"")
    assert resolve_weights(root, low_level=other).low_level == other
    with pytest.raises(WeightsNotFoundError, match="--low-level"):
        resolve_weights(root, low_level=tmp_path / "missing.pth")
