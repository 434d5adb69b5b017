"""DiffusionPriorUNet: doc keys, an independent reference forward, exact-zero uncond terms, ONNX."""

import math

import numpy as np
import pytest
torch = pytest.importorskip("torch", reason="needs torch (the export extra)")
pytest.importorskip("diffusers", reason="needs diffusers (the export extra)")
from torch.nn import functional as F

from diffusers.models.embeddings import get_timestep_embedding
from eeg2img_deploy.models.diffusion_prior import DiffusionPriorUNet, timestep_features

DIMS = [1024, 512, 256, 128, 64]


def doc_key_shapes() -> dict:
    """The state-dict layout of the paper's DiffusionPriorUNet(cond_dim=1024), from the doc's section 3."""
    shapes = {}

    def linear(name, fan_in, fan_out):
        shapes[name + ".weight"] = (fan_out, fan_in)
        shapes[name + ".bias"] = (fan_out,)

    def norm(name, dim):
        shapes[name + ".weight"] = (dim,)
        shapes[name + ".bias"] = (dim,)

    linear("input_layer.0", 1024, 1024)
    norm("input_layer.1", 1024)
    for side, pairs in (("encode", zip(DIMS[:-1], DIMS[1:])), ("decode", zip(DIMS[:0:-1], DIMS[-2::-1]))):
        pairs = list(pairs)
        for i, (d_in, _) in enumerate(pairs):
            linear(f"{side}_time_embedding.{i}.linear_1", 512, d_in)
            linear(f"{side}_time_embedding.{i}.linear_2", d_in, d_in)
        for i, (d_in, _) in enumerate(pairs):
            linear(f"{side}_cond_embedding.{i}", 1024, d_in)
        for i, (d_in, d_out) in enumerate(pairs):
            linear(f"{side}_layers.{i}.0", d_in, d_out)
            norm(f"{side}_layers.{i}.1", d_out)
    linear("output_layer", 1024, 1024)
    return shapes


def doc_state_dict(seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in doc_key_shapes().items():
        if len(shape) == 2:
            state[key] = torch.randn(shape, generator=gen) / math.sqrt(shape[1])
        elif key.endswith(".weight"):  # the only 1-D weights are LayerNorm scales
            state[key] = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:
            state[key] = 0.1 * torch.randn(shape, generator=gen)
    return state


def reference_forward(state, x, t, c=None):
    """The doc's forward written out over the raw state dict; c=None leaves the cond terms out."""

    def lin(name, h):
        return F.linear(h, state[name + ".weight"], state[name + ".bias"])

    def block(name, h):  # Linear, LayerNorm, SiLU (dropout is off in eval)
        h = lin(name + ".0", h)
        return F.silu(F.layer_norm(h, h.shape[-1:], state[name + ".1.weight"], state[name + ".1.bias"]))

    temb = get_timestep_embedding(t, 512, flip_sin_to_cos=True, downscale_freq_shift=0)
    h = block("input_layer", x)
    skips = []
    for side in ("encode", "decode"):
        for i in range(4):
            if side == "encode":
                skips.append(h)
            time = lin(f"{side}_time_embedding.{i}.linear_2", F.silu(lin(f"{side}_time_embedding.{i}.linear_1", temb)))
            h = h + time
            if c is not None:
                h = h + lin(f"{side}_cond_embedding.{i}", c)
            h = block(f"{side}_layers.{i}", h)
            if side == "decode":
                h = h + skips[-1 - i]
    return lin("output_layer", h)


@pytest.fixture(scope="module")
def weights():
    return doc_state_dict()


@pytest.fixture(scope="module")
def prior(weights):
    model = DiffusionPriorUNet()
    model.load_state_dict(weights, strict=True)
    return model.eval()


def inputs(batch: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 1024, generator=gen)
    c = torch.randn(batch, 1024, generator=gen)
    t = torch.tensor([980.0, 500.0, 20.0, 0.0, 1.0, 999.0][:batch])
    return x, t, c


def test_doc_state_dict_loads_strict_with_doc_counts():
    shapes = doc_key_shapes()
    assert len(shapes) == 86
    assert sum(math.prod(s) for s in shapes.values()) == 9_675_648
    model = DiffusionPriorUNet()
    model.load_state_dict(doc_state_dict(), strict=True)
    assert sum(p.numel() for p in model.parameters()) == 9_675_648
    assert list(model.buffers()) == []
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes


def test_time_features_match_diffusers():
    t = torch.tensor([0.0, 1.0, 20.0, 500.0, 980.0, 999.0, 37.5])
    expected = get_timestep_embedding(t, 512, flip_sin_to_cos=True, downscale_freq_shift=0)
    torch.testing.assert_close(timestep_features(t), expected, rtol=0, atol=1e-6)


def test_int64_and_float32_timesteps_give_the_same_output(prior):
    x, t, c = inputs(4)
    with torch.no_grad():
        assert torch.equal(prior(x, t, c), prior(x, t.long(), c))


def test_matches_reference_forward_cond_and_uncond(prior, weights):
    x, t, c = inputs(4)
    with torch.no_grad():
        torch.testing.assert_close(prior(x, t, c), reference_forward(weights, x, t, c), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(prior(x, t), reference_forward(weights, x, t), rtol=1e-5, atol=1e-5)


def test_masked_rows_are_exactly_unconditional_and_not_a_zero_condition(prior):
    x, t, c = inputs(4)
    with torch.no_grad():
        masked = prior(x, t, c, cond_mask=torch.zeros(4))
        uncond = prior(x, t)
        zero_cond = prior(x, t, torch.zeros_like(c))
    assert torch.equal(masked, uncond)  # exact zeros, bias included
    assert (masked - zero_cond).abs().max() > 1e-3


def test_mixed_cond_mask_batch_equals_separate_calls(prior):
    x, t, c = inputs(4)
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0])
    with torch.no_grad():
        mixed = prior(x, t, c, cond_mask=mask)
        cond = prior(x, t, c)
        uncond = prior(x, t)
    torch.testing.assert_close(mixed[mask == 1], cond[mask == 1], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(mixed[mask == 0], uncond[mask == 0], rtol=1e-6, atol=1e-6)
    assert (cond - uncond).abs().max() > 1e-3  # the condition matters at all


def test_dropout_default_is_the_trained_value():
    assert DiffusionPriorUNet().encode_layers[0][3].p == 0.1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # dynamo=False is the legacy exporter
def test_onnx_export_batched_cfg_matches_torch(prior, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    path = tmp_path / "prior.onnx"
    x, t, c = inputs(2)
    names = ["x", "t", "c", "cond_mask"]
    torch.onnx.export(
        prior,
        (x, t, c, torch.ones(2)),
        str(path),
        input_names=names,
        output_names=["eps"],
        dynamic_axes={name: {0: "batch"} for name in names + ["eps"]},
        opset_version=18,
        dynamo=False,
    )
    x, t, c = inputs(3, seed=5)
    mask = torch.tensor([1.0, 0.0, 1.0])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"x": x.numpy(), "t": t.numpy(), "c": c.numpy(), "cond_mask": mask.numpy()}
    (eps,) = session.run(None, feeds)
    with torch.no_grad():
        expected = prior(x, t, c, cond_mask=mask).numpy()
    np.testing.assert_allclose(eps, expected, rtol=1e-4, atol=1e-4)
