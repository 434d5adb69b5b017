"""``init-tiny`` writes the real on-disk formats, deterministically."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support import TEST_IMAGE_SIZE

torch = pytest.importorskip("torch")


def test_model_index_names_the_sdxl_components(tiny_dir):
    index = json.loads((tiny_dir / "sdxl-turbo" / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    for name, cls in [("unet", "UNet2DConditionModel"), ("vae", "AutoencoderKL"), ("text_encoder", "CLIPTextModel"),
                      ("text_encoder_2", "CLIPTextModelWithProjection"), ("tokenizer", "CLIPTokenizer"),
                      ("tokenizer_2", "CLIPTokenizer"), ("scheduler", "EulerAncestralDiscreteScheduler")]:
        assert index[name][1] == cls, name
    sched = json.loads((tiny_dir / "sdxl-turbo" / "scheduler" / "scheduler_config.json").read_text())
    assert sched["timestep_spacing"] == "trailing" and sched["beta_schedule"] == "scaled_linear"


def test_diffusers_loads_it_offline_with_the_ip_adapter(tiny_dir):
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_dir / "sdxl-turbo", local_files_only=True)
    pipe.load_ip_adapter(str(tiny_dir / "ip-adapter"), subfolder="sdxl_models",
                         weight_name="ip-adapter_sdxl_vit-h.safetensors", image_encoder_folder=None, local_files_only=True)
    assert pipe.unet.encoder_hid_proj is not None
    assert pipe.unet.config.sample_size == 64 and pipe.vae.config.scaling_factor == 0.13025


def test_ip_adapter_has_h94_keys(tiny_dir, tiny_layout):
    from safetensors import safe_open

    with safe_open(str(tiny_layout.ip_adapter.file), framework="numpy") as f:
        keys = set(f.keys())
        proj = f.get_slice("image_proj.proj.weight").get_shape()
    assert tiny_layout.ip_adapter.file == tiny_dir / "ip-adapter" / "sdxl_models" / "ip-adapter_sdxl_vit-h.safetensors"
    assert {"image_proj.proj.weight", "image_proj.proj.bias", "image_proj.norm.weight", "image_proj.norm.bias",
            "ip_adapter.1.to_k_ip.weight", "ip_adapter.1.to_v_ip.weight"} <= keys
    ids = {int(k.split(".")[1]) for k in keys if k.startswith("ip_adapter.")}
    assert ids and all(i % 2 == 1 for i in ids) and sorted(ids) == list(range(1, 2 * len(ids), 2))
    assert proj[1] == 1024


def test_encoder_and_prior_are_plain_state_dicts(tiny_layout):
    from eeg2img_deploy.models.atm_encoder import ATMEncoder
    from eeg2img_deploy.models.diffusion_prior import DiffusionPriorUNet

    assert tiny_layout.encoder.suffix == ".pth" and tiny_layout.prior.suffix == ".pt"
    enc_sd = torch.load(tiny_layout.encoder, map_location="cpu", weights_only=True)
    prior_sd = torch.load(tiny_layout.prior, map_location="cpu", weights_only=True)
    ATMEncoder(num_subjects=10, num_subject_linears=2).load_state_dict(enc_sd, strict=True)
    DiffusionPriorUNet().load_state_dict(prior_sd, strict=True)
    assert len(enc_sd) == 53 and len(prior_sd) == 86
    assert int(enc_sd["enc_eeg.0.tsconv.2.num_batches_tracked"]) > 0  # calibrated, not fresh BatchNorm
    assert not torch.allclose(enc_sd["enc_eeg.0.tsconv.2.running_var"], torch.ones(40))


def test_eeg_and_taesd(tiny_dir, tiny_layout, tiny_eeg):
    assert tiny_layout.taesd == tiny_dir / "taesdxl"
    assert tiny_eeg.shape == (4, 63, 250) and tiny_eeg.dtype == np.float32 and np.isfinite(tiny_eeg).all()


def _tensors(folder):
    from safetensors.torch import load_file

    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.suffix == ".safetensors":
            out[rel] = load_file(str(path))
        elif path.suffix in (".pt", ".pth"):
            out[rel] = torch.load(path, map_location="cpu", weights_only=True)
        elif path.suffix in (".json", ".npy", ".txt"):
            out[rel] = path.read_bytes()
    return out


def test_init_tiny_refuses_a_folder_that_is_not_empty(monkeypatch, capsys, tmp_path):
    """Before: it wrote the tiny weights over whatever the folder held, silently."""
    import time

    from support import run_main

    real = tmp_path / "weights" / "encoder" / "atms_sub-08.pth"
    real.parent.mkdir(parents=True)
    real.write_bytes(b"someone's real weights")
    t0 = time.monotonic()
    code, stdout, err = run_main(monkeypatch, capsys, ["init-tiny", "--out", tmp_path / "weights"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--overwrite" in err and "encoder" in err, err
    assert stdout == "" and real.read_bytes() == b"someone's real weights" and time.monotonic() - t0 < 5


def test_init_tiny_is_deterministic(tmp_path, tiny_dir):
    from eeg2img_deploy.tiny import init_tiny

    (tmp_path / "again").mkdir()
    (tmp_path / "again" / "README.txt").write_text("an earlier set")  # overwrite=True writes over it
    init_tiny(tmp_path / "again", seed=0, image_size=TEST_IMAGE_SIZE, overwrite=True)
    a, b = _tensors(tiny_dir), _tensors(tmp_path / "again")
    assert a.keys() == b.keys()
    assert any(k.startswith("sdxl-turbo/unet") for k in a)
    for name in a:
        if isinstance(a[name], bytes):
            assert a[name] == b[name] or name.endswith("README.txt"), name
        else:
            assert a[name].keys() == b[name].keys(), name
            for key in a[name]:
                assert torch.equal(a[name][key], b[name][key]), (name, key)
