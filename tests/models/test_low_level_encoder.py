"""The low-level encoder: both checkpoint generations load strictly from state dicts written key by key
from the paper's code (not from our own module), and a wrong file fails naming the key."""

import pytest
torch = pytest.importorskip("torch", reason="needs torch (the export extra)")

from eeg2img_deploy.errors import CheckpointError
from eeg2img_deploy.models.checkpoints import load_low_level_encoder, low_level_encoder_from_state
from eeg2img_deploy.models.low_level_encoder import PAPER, REFACTOR, LowLevelArchitecture, LowLevelEncoder

STRIDE2 = (1024, 512, 256, 128, 64, 32)


def _conv_bn(state, index, cin, cout, k, bn=True):
    state[f"upsampler.{index}.weight"] = torch.zeros(cin, cout, k, k)  # ConvTranspose2d: (in, out, k, k)
    state[f"upsampler.{index}.bias"] = torch.zeros(cout)
    if bn:
        b = f"upsampler.{index + 1}"
        state[f"{b}.weight"], state[f"{b}.bias"] = torch.ones(cout), torch.zeros(cout)
        state[f"{b}.running_mean"], state[f"{b}.running_var"] = torch.zeros(cout), torch.ones(cout)
        state[f"{b}.num_batches_tracked"] = torch.tensor(0)


def paper_era_state(num_subjects=1):
    """``encoder_low_level`` of train_vae_latent_512_low_level_no_average.py: keys upsampler.0..21."""
    state = {"logit_scale": torch.tensor(2.6593)}
    for i in range(num_subjects):
        state[f"subject_wise_linear.{i}.weight"] = torch.zeros(128, 250)
        state[f"subject_wise_linear.{i}.bias"] = torch.zeros(128)
    cin = 8064
    for block, cout in enumerate(STRIDE2):  # ConvT, BN, ReLU: indices 0, 3, ..., 15
        _conv_bn(state, 3 * block, cin, cout, 4)
        cin = cout
    _conv_bn(state, 18, 32, 16, 1)  # 32 -> 16, BN, ReLU
    _conv_bn(state, 21, 16, 4, 1, bn=False)  # 16 -> 4
    return state


def refactor_state():
    """``encoder_low_level`` of the 2025 train_lowlevel.py: subject_linear, upsampler.0..18."""
    state = {"logit_scale": torch.tensor(2.6593), "subject_linear.0.weight": torch.zeros(128, 250),
             "subject_linear.0.bias": torch.zeros(128)}
    cin = 8064
    for block, cout in enumerate(STRIDE2):
        _conv_bn(state, 3 * block, cin, cout, 4)
        cin = cout
    _conv_bn(state, 18, 32, 4, 1, bn=False)
    return state


@pytest.mark.parametrize("make, arch", [(paper_era_state, PAPER), (refactor_state, REFACTOR)])
def test_full_size_generations_load_strictly(make, arch):
    state = make()
    last = max(int(k.split(".")[1]) for k in state if k.startswith("upsampler."))  # 21 (paper era), 18 (refactor)
    state[f"upsampler.{last}.bias"].fill_(0.25)
    model = low_level_encoder_from_state(state, "test")
    assert model.arch == arch
    assert model.arch.latent_side == 64
    assert set(model.state_dict()) == set(state)
    with torch.no_grad():
        out = model(torch.randn(2, 63, 250))
    assert out.shape == (2, 4, 64, 64)
    assert torch.allclose(out, torch.full_like(out, 0.25))  # zero weights: only the last bias remains


def test_paper_era_with_two_subject_linears_runs_the_first():
    state = paper_era_state(num_subjects=2)
    model = low_level_encoder_from_state(state, "test")
    assert model.arch.num_linears == 2


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("upsampler.19.running_var"), "missing keys: upsampler.19.running_var"),
    (lambda s: s.__setitem__("upsampler.1.weight", torch.ones(1000)), "misshaped keys: upsampler.1.weight"),
    (lambda s: s.__setitem__("dropout.p", torch.tensor(0.5)), "unexpected keys: dropout.p"),
])
def test_mismatch_names_the_key(change, message):
    state = paper_era_state()
    change(state)
    with pytest.raises(CheckpointError, match=message.replace(".", r"\.")):
        low_level_encoder_from_state(state, "test")


def test_not_a_low_level_checkpoint(tmp_path):
    torch.save({"encoder.x": torch.zeros(1)}, tmp_path / "atm.pth")
    with pytest.raises(CheckpointError, match="--low-level"):
        load_low_level_encoder(tmp_path / "atm.pth")


def test_file_round_trip_small_architecture(tmp_path):
    """A small model of the same layout (the tiny set's) saves and loads with its weights and provenance."""
    torch.manual_seed(0)
    arch = LowLevelArchitecture(generation="refactor", linear_features=2, widths=(16, 8), head=(), logit_scale=True)
    model = LowLevelEncoder(arch)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
    torch.save(model.state_dict(), tmp_path / "best_encoder.pth")
    loaded, prov = load_low_level_encoder(tmp_path / "best_encoder.pth", "scaled")
    eeg = torch.randn(3, 63, 250)
    with torch.no_grad():
        assert torch.equal(loaded(eeg), model.eval()(eeg))
    assert prov.architecture["latent_side"] == 4 and prov.latent_convention == "scaled"
    assert prov.num_parameters == sum(p.numel() for p in model.parameters())


def _small(generation: str) -> LowLevelEncoder:
    torch.manual_seed(0)
    arch = LowLevelArchitecture(generation=generation, linear_features=2, widths=(16, 8),
                                head=() if generation == "refactor" else (4,))
    return LowLevelEncoder(arch).eval()


def test_refactor_keeps_the_first_250_samples_of_a_longer_trial():
    """As ``encoder_low_level.forward`` of the refactor's train_lowlevel.py (``x[..., :250]``): a 1.2 s trial
    gives the image of its first second, where it used to end in torch's matmul shape error."""
    model = _small("refactor")
    eeg = torch.randn(2, 63, 300)
    with torch.no_grad():
        got = model(eeg)
        assert torch.equal(got, model(eeg[..., :250].contiguous()))
        assert (got - model(eeg[..., 50:].contiguous())).abs().max() > 1e-3  # the first 250, not any 250


@pytest.mark.parametrize("generation, samples", [("paper", 300), ("paper", 200), ("refactor", 200)])
def test_other_lengths_are_refused_naming_the_shape(generation, samples):
    """The paper-era class has no such cut (its Linear takes exactly 250); nothing cuts a shorter trial."""
    with pytest.raises(ValueError, match=rf"takes \(B, 63, 250\) EEG .* got \(1, 63, {samples}\)"):
        _small(generation)(torch.randn(1, 63, samples))
