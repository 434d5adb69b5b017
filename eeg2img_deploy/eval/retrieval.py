"""Zero-shot retrieval (the paper's Table 8): the deployed encoder's EEG embeddings against the test
images' CLIP ViT-H-14 features, top-1 and top-5, over all images and k-way.

k-way follows the paper's ``evaluate_model`` (``Retrieval/ATMS_retrieval.py``): for each trial, k - 1
distractors drawn with Python's ``random.sample`` from the other images (in index order), the true
image appended; the trial is right when the true image ranks first (top-1) or in the first five
(top-5; only for k > 5, where it can fail). Every k draws from one ``random.Random(seed)`` in the
paper's order (200, 2, 4, 10, 50, 100), and for 50 and 100 a second, unused draw is made per trial as
the paper's code does, so the distractor sets are the ones the paper's code draws after
``random.seed(seed)``. Similarity is the cosine (the paper ranks ``eeg @ features.T`` with
L2-normalised image features: the same order).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from ..errors import OptionError

PAPER_WAYS = (200, 2, 4, 10, 50, 100)  # the paper's evaluation order (its random stream runs through them)
DOUBLE_DRAW = (50, 100)  # the paper's loop samples these twice per trial and scores the first draw


def cosine_scores(eeg_embeds: np.ndarray, image_features: np.ndarray) -> np.ndarray:
    """(trials, images) cosine similarity."""
    a = np.asarray(eeg_embeds, np.float64)
    b = np.asarray(image_features, np.float64)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def _rank_of_true(row: np.ndarray, true_pos: int) -> int:
    """0-based rank of ``row[true_pos]`` (ties: the earlier index ranks first, as argmax/topk on ties)."""
    order = np.argsort(-row, kind="stable")
    return int(np.nonzero(order == true_pos)[0][0])


def full_set(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1/top-5 over every image (the paper's 200-way on THINGS' 200 test images)."""
    ranks = np.array([_rank_of_true(row, int(y)) for row, y in zip(scores, labels)])
    return {"top1": float(np.mean(ranks < 1)), "top5": float(np.mean(ranks < 5))}


def k_way(scores: np.ndarray, labels: np.ndarray, ways: tuple[int, ...], seed: int) -> dict[str, dict]:
    """k -> {top1, top5 (None for k <= 5)}, distractors drawn as the paper does (see the module)."""
    n_images = scores.shape[1]
    rng = random.Random(seed)
    out = {}
    for k in [w for w in PAPER_WAYS if w in ways] + [w for w in ways if w not in PAPER_WAYS]:
        if k > n_images:
            continue
        hits1 = hits5 = 0
        for row, label in zip(scores, labels):
            label = int(label)
            others = [c for c in range(n_images) if c != label]
            chosen = rng.sample(others, k - 1) + [label]
            if k in DOUBLE_DRAW:
                rng.sample(others, k - 1)
            rank = _rank_of_true(row[chosen], k - 1)
            hits1 += rank < 1
            hits5 += rank < 5
        out[str(k)] = {"top1": hits1 / len(labels), "top5": hits5 / len(labels) if k > 5 else None}
    return out


def read_image_features(path: str | Path) -> np.ndarray:
    """(N, D) float features from ``.npy``, or the paper's ``ViT-H-14_features_test.pt`` (``img_features``)."""
    path = Path(path)
    if not path.is_file():
        raise OptionError(f"--image-features {path} does not exist")
    if path.suffix == ".pt":
        import torch

        data = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle code
        feats = data["img_features"] if isinstance(data, dict) and "img_features" in data else data
        feats = np.asarray(feats.float().numpy() if hasattr(feats, "numpy") else feats)
    else:
        with open(path, "rb") as f:
            if f.read(6) != b"\x93NUMPY":  # numpy would call any other file "pickled data"
                raise OptionError(f"--image-features {path} is not a .npy file (no numpy header): save the "
                                  "(images, dim) features with np.save")
        try:
            feats = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise OptionError(f"--image-features {path} is not a plain .npy array ({e})") from None
    if feats.ndim != 2 or not np.issubdtype(feats.dtype, np.floating) or not np.isfinite(feats).all():
        raise OptionError(f"--image-features {path}: expected finite (images, dim) floats, got {feats.dtype} {feats.shape}")
    return feats.astype(np.float32)


def read_labels(path: str | Path | None, n_trials: int, n_images: int) -> np.ndarray:
    """Which image each trial showed: ``--labels`` (.npy or text, one integer per trial), else trial i -> image i."""
    if path is None:
        if n_trials > n_images:
            raise OptionError(f"{n_trials} EEG trials but {n_images} image features: trial i shows image i unless "
                              "--labels FILE says which image each trial showed")
        return np.arange(n_trials)
    path = Path(path)
    try:
        labels = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.loadtxt(path, dtype=np.int64, ndmin=1)
    except (OSError, ValueError) as e:
        raise OptionError(f"--labels {path}: not a list of integers ({e})") from None
    labels = np.asarray(labels).reshape(-1)
    if labels.dtype.kind not in "iu" or len(labels) != n_trials:
        raise OptionError(f"--labels {path}: need {n_trials} integers (one per trial), got {labels.dtype} x {len(labels)}")
    if labels.min() < 0 or labels.max() >= n_images:
        raise OptionError(f"--labels {path}: image indices must be in 0..{n_images - 1}, got {labels.min()}..{labels.max()}")
    return labels.astype(np.int64)


def retrieval_metrics(eeg_embeds: np.ndarray, image_features: np.ndarray, labels: np.ndarray, *,
                      ways: tuple[int, ...] = PAPER_WAYS, seed: int = 0) -> dict:
    """``top1``/``top5`` over the whole set, ``k_way`` per k that fits, and what was compared."""
    if eeg_embeds.shape[1] != image_features.shape[1]:
        raise OptionError(f"the encoder's embeddings are {eeg_embeds.shape[1]}-d, --image-features "
                          f"{image_features.shape[1]}-d: they must be the same CLIP space (ViT-H-14, 1024)")
    s = cosine_scores(eeg_embeds, image_features)
    return {**full_set(s, labels), "k_way": k_way(s, labels, tuple(ways), seed), "n_trials": len(labels),
            "n_images": int(image_features.shape[0]), "seed": seed}


IMAGE_ENCODER_SUBFOLDER = "models/image_encoder"  # h94/IP-Adapter's ViT-H-14 (the SDXL vit-h adapter's encoder)


def find_image_encoder(path: str | Path | None) -> Path:
    """``--image-encoder`` (a CLIPVisionModelWithProjection folder, or an IP-Adapter folder holding one), else the
    Hugging Face cache of h94/IP-Adapter."""
    from ..weights import IP_ADAPTER_REPO, hf_cache_snapshot

    candidates = [Path(path), Path(path) / IMAGE_ENCODER_SUBFOLDER] if path is not None else []
    if path is None and (snap := hf_cache_snapshot(IP_ADAPTER_REPO)) is not None:
        candidates.append(snap / IMAGE_ENCODER_SUBFOLDER)
    for c in candidates:
        if (c / "config.json").is_file():
            return c
    where = f"--image-encoder {path}" if path is not None else f"the Hugging Face cache of {IP_ADAPTER_REPO}"
    raise OptionError(f"no CLIP ViT-H-14 image encoder in {where}: pass --image-encoder with the folder "
                      f"{IP_ADAPTER_REPO}/{IMAGE_ENCODER_SUBFOLDER} (config.json + weights), or --image-features F.npy")


def image_features_from_images(images: np.ndarray, encoder_dir: str | Path, *, device: str = "cpu",
                               chunk: int = 16) -> np.ndarray:
    """(N, D) L2-normalised image embeddings of (N, H, W, 3) uint8 images by the IP-Adapter's image encoder
    (CLIP's deterministic preprocessing: shortest side 224 bicubic, centre crop, CLIP mean/std)."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    from ..quiet import quiet

    with quiet(bars=True):
        model = CLIPVisionModelWithProjection.from_pretrained(str(encoder_dir), local_files_only=True)
        # transformers wraps PreTrainedModel.to in functools.wraps(nn.Module.to): typeshed's _Wrapped drops `self`
        model = model.to(device).eval()  # type: ignore[arg-type]
    processor = CLIPImageProcessor()  # the defaults are CLIP's (224, bicubic, centre crop, OpenAI mean/std)
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), chunk):
            pixels = processor(images=list(images[i:i + chunk]), return_tensors="pt")["pixel_values"].to(device)
            out.append(model(pixel_values=pixels).image_embeds.float().cpu().numpy())
    feats = np.concatenate(out).astype(np.float64)
    return (feats / np.linalg.norm(feats, axis=1, keepdims=True)).astype(np.float32)
