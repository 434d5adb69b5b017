"""Checkpoint loading: formats, wrappers, size inference, provenance, and errors that name the key."""

import hashlib
import json

import pytest
torch = pytest.importorskip("torch", reason="needs torch (the export extra)")
from safetensors.torch import save_file

from eeg2img_deploy.errors import CheckpointError, WeightsNotFoundError
from eeg2img_deploy.models.atm_encoder import ATMEncoder, EncoderVariant
from eeg2img_deploy.models.checkpoints import (
    load_encoder,
    load_prior,
    load_state_dict_file,
    sha256_file,
)
from eeg2img_deploy.models.diffusion_prior import DiffusionPriorUNet

TABLE_KEY = "encoder.enc_embedding.subject_embedding.subject_embedding.weight"


def encoder_state(num_subjects=10, num_linears=2, seed=0):
    torch.manual_seed(seed)
    state = ATMEncoder(num_subjects, num_linears).state_dict()
    # Non-default BatchNorm stats, so a loader that drops buffers would be caught.
    for key in state:
        if key.endswith("running_mean"):
            state[key] = torch.randn_like(state[key])
    return state


def save_pth(state, path):
    torch.save(state, path)
    return path


@pytest.mark.parametrize("num_subjects, num_linears", [(10, 2), (10, 1), (2, 2)])
def test_load_encoder_infers_size_and_reproduces_weights(tmp_path, num_subjects, num_linears):
    state = encoder_state(num_subjects, num_linears)
    path = save_pth(state, tmp_path / "sub-08_best.pth")
    model, prov = load_encoder(path)
    assert not model.training
    assert (prov.num_subjects, prov.num_subject_linears) == (num_subjects, num_linears)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert prov.num_parameters == sum(p.numel() for p in model.parameters())
    assert prov.file_name == "sub-08_best.pth"
    assert prov.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_variant_is_applied_and_recorded(tmp_path):
    path = save_pth(encoder_state(), tmp_path / "enc.pth")
    variant = EncoderVariant(token_slice="refactor", positional_embedding=True)
    model, prov = load_encoder(path, variant)
    assert model.config == variant
    record = prov.to_dict()
    assert record["token_slice"] == "refactor" and record["positional_embedding"] is True
    json.dumps(record)  # the manifest stores it as JSON


@pytest.mark.parametrize("wrap", ["state_dict", "model", "module_prefix", "safetensors"])
def test_wrappers_and_formats_load(tmp_path, wrap):
    state = encoder_state()
    if wrap == "safetensors":
        path = tmp_path / "enc.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif wrap == "module_prefix":
        path = save_pth({"module." + k: v for k, v in state.items()}, tmp_path / "enc.pt")
    else:
        path = save_pth({wrap: state, "epoch": torch.tensor(40)}, tmp_path / "enc.bin")
    loaded = load_state_dict_file(path)
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    load_encoder(path)


def test_missing_file_raises_weights_not_found(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="nope.pth"):
        load_encoder(tmp_path / "nope.pth")


def test_unsupported_suffix_is_refused(tmp_path):
    path = tmp_path / "enc.ckpt"
    path.write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"\.safetensors"):
        load_state_dict_file(path)


def test_pickled_module_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "whole_model.pth"
    torch.save(torch.nn.Linear(2, 2), path)  # a pickled module: weights_only refuses to unpickle it
    with pytest.raises(CheckpointError, match=r"torch.save\(model.state_dict\(\)"):
        load_state_dict_file(path)


def test_missing_key_is_named(tmp_path):
    state = encoder_state()
    del state["proj_eeg.2.bias"]
    with pytest.raises(CheckpointError, match=r"enc\.pth.*missing keys: proj_eeg\.2\.bias \[1024\]"):
        load_encoder(save_pth(state, tmp_path / "enc.pth"))


def test_unexpected_key_is_named(tmp_path):
    state = encoder_state()
    state["loss_func.logit_scale"] = torch.zeros(())
    with pytest.raises(CheckpointError, match=r"unexpected keys: loss_func\.logit_scale"):
        load_encoder(save_pth(state, tmp_path / "enc.pth"))


def test_misshaped_key_is_named_with_both_shapes(tmp_path):
    state = encoder_state()
    state["proj_eeg.0.weight"] = torch.zeros(1024, 1400)
    with pytest.raises(CheckpointError, match=r"proj_eeg\.0\.weight expected \[1024, 1440\], found \[1024, 1400\]"):
        load_encoder(save_pth(state, tmp_path / "enc.pth"))


def test_gap_in_subject_linears_is_reported(tmp_path):
    state = encoder_state(num_linears=2)
    state["subject_wise_linear.2.weight"] = state.pop("subject_wise_linear.1.weight")
    state["subject_wise_linear.2.bias"] = state.pop("subject_wise_linear.1.bias")
    with pytest.raises(CheckpointError, match=r"missing keys: subject_wise_linear\.1\.weight"):
        load_encoder(save_pth(state, tmp_path / "enc.pth"))


def test_prior_file_given_as_encoder_is_explained(tmp_path):
    path = save_pth(DiffusionPriorUNet().state_dict(), tmp_path / "diffusion_prior.pt")
    with pytest.raises(CheckpointError, match=TABLE_KEY.replace(".", r"\.")):
        load_encoder(path)


def test_load_prior_round_trip_and_provenance(tmp_path):
    torch.manual_seed(0)
    state = DiffusionPriorUNet().state_dict()
    path = save_pth(state, tmp_path / "diffusion_prior.pt")
    model, prov = load_prior(path)
    assert not model.training
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert prov.to_dict() == {
        "file_name": "diffusion_prior.pt",
        "sha256": sha256_file(path),
        "cond_dim": 1024,
        "num_parameters": 9_675_648,
    }


def test_encoder_file_given_as_prior_is_refused(tmp_path):
    path = save_pth(encoder_state(), tmp_path / "enc.pth")
    with pytest.raises(CheckpointError, match=r"prior checkpoint enc\.pth.*missing keys: input_layer\.0\.weight"):
        load_prior(path)


def test_sha256_file_is_chunked_and_correct(tmp_path):
    path = tmp_path / "blob.bin"
    data = bytes(range(256)) * 1000
    path.write_bytes(data)
    assert sha256_file(path, chunk=1000) == hashlib.sha256(data).hexdigest()
