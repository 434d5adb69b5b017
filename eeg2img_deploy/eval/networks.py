"""The metric networks of Table 1, loaded from local files only, and the features the metrics compare.

torchvision builds AlexNet, Inception-V3, EfficientNet-B1 and the SwAV ResNet-50; transformers builds
CLIP ViT-L/14. Nothing is downloaded: a missing file is an error naming it and where users get it.
Each file loads strictly into its architecture, except the classifier heads the metrics never run
(their keys are neither required nor used): a real torchvision file, a torch hub cache
(``~/.cache/torch/hub/checkpoints``) and the tiny set's head-less files all load.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np

from ..errors import CheckpointError, WeightsNotFoundError
from .protocol import CLIP_REPO, NETWORK_METRICS, PIXEL_SIZE, WEIGHTS, WEIGHTS_HELP

CHUNK = 16  # images per network call: bounds the activations' memory (Inception at 342 px)


def find_weights(folder: str | Path) -> dict[str, Path]:
    """network -> its file (or CLIP's folder) in ``folder``; CLIP may also come from the HF cache."""
    from ..weights import hf_cache_snapshot

    folder = Path(folder)
    if not folder.is_dir():
        raise WeightsNotFoundError(f"--weights {folder} is not a folder; it should hold\n{WEIGHTS_HELP}")
    found, missing = {}, []
    for net, spec in WEIGHTS.items():
        path = folder / spec.name
        if net == "clip" and not (path / "config.json").is_file():
            snap = hf_cache_snapshot(CLIP_REPO)
            path = snap if snap is not None and (snap / "config.json").is_file() else path
        if path.exists() and (net != "clip" or (path / "config.json").is_file()):
            found[net] = path
        else:
            missing.append(f"{spec.name} ({spec.source}: {spec.url})")
    if missing:
        raise WeightsNotFoundError(f"--weights {folder} has no {'; no '.join(missing)}: put them there (never downloaded)")
    return found


def weights_hashes(paths: dict[str, Path]) -> dict[str, dict[str, str]]:
    """sha256 of every file each network loads (CLIP: its config and weight files)."""
    from ..fileio import sha256_file

    out = {}
    for net, path in paths.items():
        files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.name == "config.json"
                                                      or p.suffix in (".safetensors", ".bin"))
        out[net] = {p.name: sha256_file(p) for p in files}
    return out


def _load_trunk(model, path: Path, net: str):
    """``path``'s state dict into ``model``: every key outside the unused heads present, with its shape."""
    import torch

    spec = WEIGHTS[net]
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle with code in it, a truncated file: never unpickled
        raise CheckpointError(f"{path} is not a plain state dict ({type(e).__name__}): expected {spec.source} "
                              f"({spec.url})") from e
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors: expected {spec.source} ({spec.url})")
    sd = {k.removeprefix(spec.strip): v for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if not k.startswith(spec.head)}
    want = {k: v for k, v in model.state_dict().items() if not k.startswith(spec.head)}
    missing, extra = sorted(want.keys() - sd.keys()), sorted(sd.keys() - want.keys())
    shapes = [f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}" for k, v in want.items() if k in sd and sd[k].shape != v.shape]
    if missing or extra or shapes:
        detail = "; ".join(x for x in (f"missing {missing[:3]}" if missing else "", f"unexpected {extra[:3]}" if extra else "",
                                       f"shapes {shapes[:3]}" if shapes else "") if x)
        raise CheckpointError(f"{path} does not fit {spec.source} ({detail}): get it from {spec.url}")
    model.load_state_dict(sd, strict=False)  # only the head's keys are left out, checked above
    return model.eval().requires_grad_(False)


def _extractor(model, nodes: list[str]):
    from torchvision.models.feature_extraction import create_feature_extractor

    with warnings.catch_warnings():  # Inception: "nodes obtained by tracing the model in eval mode are a subsequence..."
        warnings.filterwarnings("ignore", message="NOTE: The nodes obtained by tracing", category=UserWarning)
        return create_feature_extractor(model, return_nodes=nodes)


def build_network(net: str, path: Path, device: str = "cpu") -> Callable:
    """A callable: (N, 3, S, S) normalised float tensor -> {node: features}."""
    import torchvision.models as tvm

    nodes = sorted({m.node for m in NETWORK_METRICS if m.network == net})
    if net == "clip":
        return _clip(path, device)
    if net == "alexnet":
        model = tvm.alexnet(weights=None)
    elif net == "inception":
        # transform_input=True: what torchvision's pretrained builder sets (the notebook's inception_v3(weights=...))
        model = tvm.inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    elif net == "effnet":
        model = tvm.efficientnet_b1(weights=None)
    elif net == "swav":
        model = tvm.resnet50(weights=None)
    else:
        raise ValueError(f"unknown metric network {net!r}")
    return _extractor(_load_trunk(model, path, net), nodes).to(device)


def _clip(path: Path, device: str) -> Callable:
    from transformers import CLIPVisionModelWithProjection

    from ..quiet import CLIP_VISION_FROM_FULL, quiet

    spec = WEIGHTS["clip"]
    try:
        with quiet(CLIP_VISION_FROM_FULL, bars=True):  # a full CLIP folder's text weights are unused by design
            # with output_loading_info, (model, info): transformers' annotation says the model alone
            model, info = cast("tuple[CLIPVisionModelWithProjection, dict[str, list[Any]]]",
                               CLIPVisionModelWithProjection.from_pretrained(str(path), local_files_only=True,
                                                                             output_loading_info=True))
    except (OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is not a CLIP folder transformers can load ({str(e).splitlines()[0]}): expected "
                              f"{spec.source} ({spec.url})") from e
    if info["missing_keys"] or info["mismatched_keys"]:
        bad = sorted(info["missing_keys"]) + [str(k) for k in info["mismatched_keys"]]
        raise CheckpointError(f"{path} lacks CLIP's vision weights {bad[:3]}: expected {spec.source} ({spec.url})")
    # transformers wraps PreTrainedModel.to in functools.wraps(nn.Module.to): typeshed's _Wrapped drops `self`
    model = model.to(device).eval().requires_grad_(False)  # type: ignore[arg-type]
    return lambda x: {"image_embeds": model(pixel_values=x).image_embeds}


def resized(images: np.ndarray, size: int, device: str = "cpu"):
    """(N, H, W, 3) uint8 -> (N, 3, size, size) float32 tensor in [0, 1], bilinear with antialiasing."""
    import torch
    from torchvision.transforms.functional import InterpolationMode, resize

    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float().div_(255.0)
    return resize(x, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)


class MetricNetworks:
    """The five networks, loaded once; :meth:`features` gives every network metric's features of a set."""

    def __init__(self, networks: dict[str, Callable], *, device: str = "cpu", hashes: dict | None = None):
        self.networks = networks
        self.device = device
        self.hashes = hashes or {}

    @classmethod
    def load(cls, weights_dir: str | Path, *, device: str = "cpu") -> MetricNetworks:
        paths = find_weights(weights_dir)
        hashes = weights_hashes(paths)
        nets = {net: build_network(net, path, device) for net, path in paths.items()}
        return cls(nets, device=device, hashes=hashes)

    def pixels(self, images: np.ndarray) -> np.ndarray:
        """(N, 425, 425, 3) float32 in [0, 1]: what PixCorr and SSIM compare."""
        parts = [resized(images[i:i + CHUNK], PIXEL_SIZE, "cpu").permute(0, 2, 3, 1).numpy()
                 for i in range(0, len(images), CHUNK)]
        return np.concatenate(parts)

    def features(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """metric key -> (N, D) float32 features of (N, H, W, 3) uint8 images, per the protocol."""
        import torch

        out: dict[str, list[np.ndarray]] = {}
        by_input: dict[tuple, list] = {}  # one pass per (network, size, normalisation)
        for m in NETWORK_METRICS:
            by_input.setdefault((m.network, m.size, m.mean, m.std), []).append(m)
        with torch.inference_mode():
            for (net, size, mean, std), metrics in by_input.items():
                mean_t = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
                std_t = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
                for i in range(0, len(images), CHUNK):
                    x = (resized(images[i:i + CHUNK], size, self.device) - mean_t) / std_t
                    feats = self.networks[net](x)
                    for m in metrics:
                        out.setdefault(m.key, []).append(feats[m.node].float().flatten(1).cpu().numpy())
        return {k: np.concatenate(v) for k, v in out.items()}
