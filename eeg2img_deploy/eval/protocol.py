"""The paper's reconstruction-metric protocol, written once: sizes, layers, normalisations, weight files.

Source: the paper repository's ``Reconstruction_Metrics_ATM.ipynb`` (derived from MindEye's
``Reconstruction_Metrics.ipynb``), in the version whose outputs are the paper's subject-8 numbers.
Every place this toolkit differs from that notebook is listed in the README ("Evaluating").
No torch here: :mod:`.networks` builds the networks from these facts.
"""

from __future__ import annotations

from dataclasses import dataclass

METRIC_KEYS = ("pixcorr", "ssim", "alexnet2", "alexnet5", "inception", "clip", "effnet", "swav")
LABELS = {"pixcorr": "PixCorr", "ssim": "SSIM", "alexnet2": "AlexNet(2)", "alexnet5": "AlexNet(5)",
          "inception": "Inception", "clip": "CLIP", "effnet": "EffNet-B", "swav": "SwAV"}
LOWER_IS_BETTER = frozenset({"effnet", "swav"})  # mean correlation distances; the rest: higher is better

PIXEL_SIZE = 425  # PixCorr and SSIM: both images resized to 425 x 425 (bilinear)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class NetworkMetric:
    """One network-based column of Table 1: which network, which node, at what size, scored how."""

    key: str  # metrics.json key
    network: str  # a key of WEIGHTS
    node: str  # torchvision feature-extractor node ("image_embeds": CLIP's projected embedding)
    size: int  # both images resized to size x size (bilinear) before normalising
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    score: str  # "two_way" (identification, higher is better) or "distance" (correlation distance, lower)


NETWORK_METRICS = (
    NetworkMetric("alexnet2", "alexnet", "features.4", 256, IMAGENET_MEAN, IMAGENET_STD, "two_way"),
    NetworkMetric("alexnet5", "alexnet", "features.11", 256, IMAGENET_MEAN, IMAGENET_STD, "two_way"),
    NetworkMetric("inception", "inception", "avgpool", 342, IMAGENET_MEAN, IMAGENET_STD, "two_way"),
    NetworkMetric("clip", "clip", "image_embeds", 224, CLIP_MEAN, CLIP_STD, "two_way"),
    NetworkMetric("effnet", "effnet", "avgpool", 255, IMAGENET_MEAN, IMAGENET_STD, "distance"),
    NetworkMetric("swav", "swav", "avgpool", 224, IMAGENET_MEAN, IMAGENET_STD, "distance"),
)


@dataclass(frozen=True)
class WeightsFile:
    """Where a metric network's weights live in ``--weights DIR`` and where users get them."""

    name: str  # file (or, for CLIP, folder) name in --weights DIR
    source: str  # what it is
    url: str  # where to get it (never downloaded by the toolkit)
    head: tuple[str, ...] = ()  # key prefixes the metric never runs (classifier heads): not required, not used
    strip: str = ""  # a key prefix the file adds (SwAV's DistributedDataParallel "module.")


WEIGHTS = {
    "alexnet": WeightsFile("alexnet-owt-7be5be79.pth", "torchvision AlexNet_Weights.IMAGENET1K_V1",
                           "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", head=("classifier.",)),
    "inception": WeightsFile("inception_v3_google-0cc3c7bd.pth", "torchvision Inception_V3_Weights.IMAGENET1K_V1 (DEFAULT)",
                             "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
                             head=("fc.", "AuxLogits.")),
    "effnet": WeightsFile("efficientnet_b1-c27df63c.pth", "torchvision EfficientNet_B1_Weights.IMAGENET1K_V2 (DEFAULT)",
                          "https://download.pytorch.org/models/efficientnet_b1-c27df63c.pth", head=("classifier.",)),
    "swav": WeightsFile("swav_800ep_pretrain.pth.tar", "SwAV ResNet-50 (torch.hub facebookresearch/swav:main resnet50)",
                        "https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar",
                        head=("fc.", "projection_head.", "prototypes."), strip="module."),
    "clip": WeightsFile("clip-vit-large-patch14", "CLIP ViT-L/14, the Hugging Face folder of openai/clip-vit-large-patch14",
                        "https://huggingface.co/openai/clip-vit-large-patch14"),
}
CLIP_REPO = "openai/clip-vit-large-patch14"

WEIGHTS_HELP = "\n".join(f"  {w.name:<36} {w.source}: {w.url}" for w in WEIGHTS.values())


def protocol_summary() -> dict:
    """What metrics.json records as the protocol it ran."""
    return {
        "pixcorr": {"size": PIXEL_SIZE, "resize": "bilinear, antialiased", "score": "mean per-pair Pearson r, RGB"},
        "ssim": {"size": PIXEL_SIZE, "gray": "rgb2gray (0.2125, 0.7154, 0.0721)", "gaussian_weights": True,
                 "sigma": 1.5, "use_sample_covariance": False, "data_range": 1.0},
        **{m.key: {"network": m.network, "node": m.node, "size": m.size, "normalize": "clip" if m.mean == CLIP_MEAN else
                   "imagenet", "score": "two-way identification" if m.score == "two_way" else "mean correlation distance"}
           for m in NETWORK_METRICS},
        "pairs": "reconstruction i with truth i",
    }
