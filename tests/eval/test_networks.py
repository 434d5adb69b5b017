"""The metric networks: loaded from the tiny set's files as real ones load, features checked against a
second path through the same weights (plain torchvision modules with forward hooks, CLIPModel), and the
loaders' errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from support import NEEDS_EVAL_ENV

torch = pytest.importorskip("torch")
tvm = pytest.importorskip("torchvision.models", reason=NEEDS_EVAL_ENV)

from eeg2img_deploy.errors import CheckpointError, WeightsNotFoundError  # noqa: E402
from eeg2img_deploy.eval import networks  # noqa: E402
from eeg2img_deploy.eval.protocol import NETWORK_METRICS, WEIGHTS  # noqa: E402


def _hooked(model, module, x):
    """``module``'s output when ``model`` runs on ``x``: the second path to a node's features."""
    seen = []
    handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.inference_mode():
        model(x)
    handle.remove()
    return seen[0].flatten(1).numpy()


@pytest.mark.parametrize("net, builder, module", [
    ("alexnet", lambda: tvm.alexnet(weights=None), {"features.4": "features.4", "features.11": "features.11"}),
    ("inception", lambda: tvm.inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=False),
     {"avgpool": "avgpool"}),
    ("effnet", lambda: tvm.efficientnet_b1(weights=None), {"avgpool": "avgpool"}),
    ("swav", lambda: tvm.resnet50(weights=None), {"avgpool": "avgpool"}),
])
def test_features_equal_a_forward_hook_on_the_plain_network(eval_dir, tiny_truth_images, net, builder, module):
    """The feature extractor's node (what the notebook's create_feature_extractor returns) is the module's output."""
    model = networks._load_trunk(builder(), eval_dir / "weights" / WEIGHTS[net].name, net)
    extractor = networks._extractor(model, sorted(module))
    x = networks.resized(tiny_truth_images[:1], 160)  # any size: this compares two paths, not the protocol
    with torch.inference_mode():
        feats = extractor(x)
    for node, name in module.items():
        np.testing.assert_allclose(feats[node].flatten(1).numpy(), _hooked(model, model.get_submodule(name), x),
                                   rtol=1e-5, atol=1e-6 * float(feats[node].abs().max()))


def test_swav_file_has_swavs_key_layout(eval_dir):
    sd = torch.load(eval_dir / "weights" / WEIGHTS["swav"].name, weights_only=True)
    assert all(k.startswith("module.") for k in sd) and "module.layer4.2.conv3.weight" in sd


def test_clip_metric_is_clips_projected_image_embedding(eval_dir, tiny_truth_images):
    from transformers import CLIPModel

    folder = eval_dir / "weights" / WEIGHTS["clip"].name
    x = networks.resized(tiny_truth_images[:2], 224)
    with torch.inference_mode():
        ours = networks.build_network("clip", folder)(x)["image_embeds"].numpy()
        full = CLIPModel.from_pretrained(str(folder)).eval()
        ref = full.visual_projection(full.vision_model(pixel_values=x).pooler_output).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
    assert ours.shape == (2, full.config.projection_dim)


def test_resize_is_pils_bilinear_within_rounding(tiny_truth_images):
    from PIL import Image

    ours = networks.resized(tiny_truth_images[:1], 224).permute(0, 2, 3, 1)[0].numpy() * 255
    pil = np.asarray(Image.fromarray(tiny_truth_images[0]).resize((224, 224), Image.BILINEAR), np.float64)
    assert np.abs(ours - pil).mean() < 0.6 and np.abs(ours - pil).max() <= 3  # PIL rounds to uint8


def test_every_network_metric_moves_with_the_image(tiny_truth):
    """Sensitivity: a different image changes every feature vector far beyond float noise."""
    for m in NETWORK_METRICS:
        feats = tiny_truth.features[m.key]
        assert np.isfinite(feats).all() and feats.shape[0] == 4
        assert 1 - np.corrcoef(feats[0], feats[1])[0, 1] > 1e-4, m.key


def test_real_files_with_their_heads_load_too(eval_dir, tmp_path):
    """A torchvision file as downloaded (classifier included) loads and gives the trunk-only file's features."""
    full = tvm.alexnet(weights=None).state_dict()
    trunk = torch.load(eval_dir / "weights" / WEIGHTS["alexnet"].name, weights_only=True)
    full.update(trunk)
    torch.save(full, tmp_path / "alexnet.pth")
    x = torch.rand(1, 3, 96, 96)
    with torch.inference_mode():
        a = networks.build_network("alexnet", tmp_path / "alexnet.pth")(x)["features.11"]
        b = networks.build_network("alexnet", eval_dir / "weights" / WEIGHTS["alexnet"].name)(x)["features.11"]
    assert torch.equal(a, b)


def test_a_file_that_does_not_fit_names_the_keys_and_where_to_get_it(eval_dir, tmp_path):
    sd = torch.load(eval_dir / "weights" / WEIGHTS["effnet"].name, weights_only=True)
    sd["features.0.0.weight"] = sd["features.0.0.weight"][:8]
    torch.save(sd, tmp_path / "effnet.pth")
    with pytest.raises(CheckpointError, match=r"shapes .*features\.0\.0\.weight.*download\.pytorch\.org"):
        networks.build_network("effnet", tmp_path / "effnet.pth")
    del sd["features.0.0.weight"]
    torch.save(sd, tmp_path / "effnet.pth")
    with pytest.raises(CheckpointError, match=r"missing \['features\.0\.0\.weight'\]"):
        networks.build_network("effnet", tmp_path / "effnet.pth")
    (tmp_path / "code.pth").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="not a plain state dict"):
        networks.build_network("effnet", tmp_path / "code.pth")


def test_a_missing_file_names_it_and_where_users_get_it(eval_dir, tmp_path):
    shutil.copytree(eval_dir / "weights", tmp_path / "w")
    (tmp_path / "w" / WEIGHTS["swav"].name).unlink()
    with pytest.raises(WeightsNotFoundError, match=r"no swav_800ep_pretrain\.pth\.tar \(SwAV.*dl\.fbaipublicfiles\.com"):
        networks.find_weights(tmp_path / "w")
