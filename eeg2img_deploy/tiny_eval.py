"""The tiny evaluation set ``init-tiny`` writes beside the tiny weights, in the real formats.

- ``eval/truth/truth_NNN.png``: one 500 x 500 image per tiny EEG trial, in trial order (THINGS' test
  images are 500 px): smooth, seeded, each one different.
- ``eval/weights/``: the metric networks with random weights, each as small as its real loader allows:
  the torchvision files hold the full architectures' trunks (the loaders never need the classifier
  heads), SwAV's with its ``module.`` prefix; CLIP is a transformers CLIP folder with a tiny config.
- ``ip-adapter/models/image_encoder/``: a tiny CLIP ViT-H-14 stand-in (1024-d projection), h94's
  layout, from which ``eval/image_features.npy`` is computed (so ``eval --retrieval --images-dir``
  reproduces the file).

Needs torchvision for the networks' state dicts; without it, ``eval/weights`` is left out with a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .quiet import quiet

log = logging.getLogger(__name__)

TRUTH_SIZE = 500  # THINGS-EEG2's test images are 500 x 500
CLIP_TINY: dict[str, Any] = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4}


def truth_images(n: int, seed: int, size: int = TRUTH_SIZE) -> np.ndarray:
    """(n, size, size, 3) uint8, seeded: a tilted gradient, soft coloured blobs, a grating and grain, so that
    both the pixel metrics and the networks have structure to compare."""
    rng = np.random.default_rng(seed + 101)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size, 3), np.float64)
    for i in range(n):
        tilt = rng.uniform(-1, 1, 2)
        img = rng.uniform(0.25, 0.75, 3) + rng.uniform(-0.3, 0.3, 3) * (tilt[0] * xx + tilt[1] * yy)[..., None]
        for _ in range(5):
            cy, cx, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.04, 0.2)
            blob = np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)))[..., None]
            img = img * (1 - blob) + blob * rng.uniform(0, 1, 3)
        freq, angle = rng.uniform(6, 30), rng.uniform(0, np.pi)
        img += 0.12 * np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy))[..., None]
        out[i] = img + rng.normal(0, 0.03, (size, size, 3))
    return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)


def _trunk(model, net: str) -> dict:
    from .eval.protocol import WEIGHTS

    spec = WEIGHTS[net]
    return {spec.strip + k: v for k, v in model.state_dict().items() if not k.startswith(spec.head)}


def write_metric_weights(folder: Path, seed: int) -> bool:
    """The five metric networks with random weights; False (and nothing written) without torchvision."""
    import torch

    try:
        import torchvision.models as tvm
    except ImportError:  # the eval extra is not installed
        log.warning("torchvision is not installed (pip install 'eeg2img-deploy[eval]'): no eval/weights written")
        return False
    from transformers import CLIPConfig, CLIPModel

    from .eval.protocol import WEIGHTS

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed + 13)
    nets = {"alexnet": tvm.alexnet(weights=None),
            "inception": tvm.inception_v3(weights=None, aux_logits=True, init_weights=True),
            "effnet": tvm.efficientnet_b1(weights=None), "swav": tvm.resnet50(weights=None)}
    for net, model in nets.items():
        torch.save(_trunk(model, net), folder / WEIGHTS[net].name)
    vision = dict(CLIP_TINY, image_size=224, patch_size=14, projection_dim=16)
    text = dict(CLIP_TINY, vocab_size=99, max_position_embeddings=77, projection_dim=16, bos_token_id=97, eos_token_id=98,
                pad_token_id=1)
    clip = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    with quiet(bars=True):
        clip.save_pretrained(folder / WEIGHTS["clip"].name, safe_serialization=True)
    return True


def write_image_encoder(folder: Path, seed: int) -> Path:
    """A tiny CLIPVisionModelWithProjection with the IP-Adapter encoder's 1024-d projection (h94's layout)."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed + 17)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_TINY, image_size=224, patch_size=14, projection_dim=1024))
    with quiet(bars=True):
        model.save_pretrained(folder, safe_serialization=True)
    return folder


def write_eval_set(out: Path, n_trials: int, seed: int) -> None:
    """``out/eval`` (truth, weights, image features) and the tiny IP-Adapter image encoder."""
    from PIL import Image

    from .eval.retrieval import IMAGE_ENCODER_SUBFOLDER, image_features_from_images

    truth = truth_images(n_trials, seed)
    folder = out / "eval" / "truth"
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(truth):
        Image.fromarray(img).save(folder / f"truth_{i:03d}.png")
    write_metric_weights(out / "eval" / "weights", seed)
    encoder = write_image_encoder(out / "ip-adapter" / IMAGE_ENCODER_SUBFOLDER, seed)
    np.save(out / "eval" / "image_features.npy", image_features_from_images(truth, encoder))
