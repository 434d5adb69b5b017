"""SDXL-Turbo + IP-Adapter: loading, and the conditioning the reference and export both use.

The SDXL folder (or the HF cache) is read with ``local_files_only``: nothing is ever downloaded. The
IP-Adapter is checked against the UNet from its tensor shapes before any tensor is loaded. The empty
prompt's embeddings are computed once at load and reused (export writes them as constants).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CheckpointError, WeightsNotFoundError
from ..quiet import NO_IMAGE_ENCODER, NOTHING_KEPT_IN_FP32, TORCHVISION_FALLBACK, quiet
from ..weights import IPAdapterLocation


def read_ip_adapter_shapes(ip: IPAdapterLocation) -> dict[str, tuple[int, ...]]:
    """Key -> shape of an h94-layout IP-Adapter file, without loading its tensors into torch."""
    path = ip.file
    if not path.is_file():
        raise WeightsNotFoundError(f"IP-Adapter weights {path} not found")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        from .checkpoints import unreadable_safetensors

        try:
            with safe_open(str(path), framework="numpy") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except Exception as exc:  # noqa: BLE001 - SafetensorError, or an OSError of a damaged file
            raise unreadable_safetensors(path, exc) from None
    import torch

    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a truncated zip, or a pickle of more than tensors
        raise CheckpointError(f"cannot read {path} as a tensor-only checkpoint ({exc.__class__.__name__}: {exc}): "
                              "copy or download it again") from None
    return {f"{group}.{k}": tuple(v.shape) for group in ("image_proj", "ip_adapter") for k, v in sd.get(group, {}).items()}


def check_ip_adapter(ip: IPAdapterLocation, cross_attention_dim: int, image_embed_dim: int = 1024) -> None:
    """Fail before loading when the IP-Adapter does not fit this UNet or the 1024-d CLIP space."""
    shapes = read_ip_adapter_shapes(ip)
    proj = shapes.get("image_proj.proj.weight")
    if proj is None:
        raise CheckpointError(
            f"{ip.file} has no 'image_proj.proj.weight': not an h94 IP-Adapter (plain ViT-H SDXL adapter expected)"
        )
    tokens, rem = divmod(proj[0], cross_attention_dim)
    if rem or proj[1] != image_embed_dim:
        raise CheckpointError(
            f"{ip.file}: image_proj.proj.weight is {list(proj)}, expected [n_tokens*{cross_attention_dim}, "
            f"{image_embed_dim}] for this UNet (cross_attention_dim {cross_attention_dim}) and ViT-H embeddings: "
            "the IP-Adapter belongs to another model; use ip-adapter_sdxl_vit-h with SDXL-Turbo"
        )
    for k, shape in shapes.items():
        if k.endswith(("to_k_ip.weight", "to_v_ip.weight")) and shape[1] != cross_attention_dim:
            raise CheckpointError(
                f"{ip.file}: {k} is {list(shape)}, expected [*, {cross_attention_dim}] for this UNet: "
                "the IP-Adapter belongs to another model"
            )


def load_sdxl_pipeline(sdxl_dir, ip: IPAdapterLocation, *, ip_scale: float = 1.0, device: str = "cpu", dtype=None):
    """SDXL-Turbo (local folder, ``local_files_only``) with the IP-Adapter loaded and its scale set."""
    import torch

    with quiet(TORCHVISION_FALLBACK):
        from diffusers import StableDiffusionXLPipeline

    # the SDXL VAE overflows in fp16: it loads in fp32 (decode upcast, as diffusers' force_upcast does)
    kwargs: dict[str, Any] = {"dtype": {"default": dtype or torch.float32, "vae": torch.float32}, "local_files_only": True}
    try:
        with quiet(bars=True):
            pipe = StableDiffusionXLPipeline.from_pretrained(sdxl_dir, **kwargs)
    except (OSError, ValueError) as first:
        try:  # a cache that holds only the fp16 variant files, as the paper downloads them
            with quiet(bars=True):
                pipe = StableDiffusionXLPipeline.from_pretrained(sdxl_dir, variant="fp16", **kwargs)
        except (OSError, ValueError):
            raise WeightsNotFoundError(f"cannot load SDXL-Turbo from {sdxl_dir}: {first}") from first
    check_ip_adapter(ip, pipe.unet.config.cross_attention_dim)
    try:
        with quiet(NO_IMAGE_ENCODER, NOTHING_KEPT_IN_FP32):
            pipe.load_ip_adapter(
                ip.folder, subfolder=ip.subfolder or None, weight_name=ip.weight_name,
                image_encoder_folder=None, local_files_only=True,
            )
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"IP-Adapter {ip.file} does not load into this UNet: {e}") from e
    pipe.set_ip_adapter_scale(ip_scale)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


@dataclass
class EmptyPrompt:
    """Empty-prompt text conditioning: constant, so computed once (and exported as constants)."""

    prompt_embeds: Any  # (1, 77, 2048) CLIP-L + bigG penultimate hidden states
    pooled: Any  # (1, 1280) bigG pooled projection

    @classmethod
    def encode(cls, pipe) -> EmptyPrompt:
        import torch

        with torch.no_grad():
            embeds, _, pooled, _ = pipe.encode_prompt(
                prompt="", device=pipe.device, num_images_per_prompt=1, do_classifier_free_guidance=False
            )
        return cls(embeds, pooled)


def encode_prompts(pipe, prompts: list[str]) -> EmptyPrompt:
    """Text conditioning of one prompt per sample (``(B, 77, 2048)``, ``(B, 1280)``), as diffusers encodes it."""
    import torch

    from ..checks import note_prompt_cut

    for prompt in dict.fromkeys(prompts):
        if len(pipe.tokenizer(prompt).input_ids) > pipe.tokenizer.model_max_length:
            note_prompt_cut(prompt, pipe.tokenizer.model_max_length)
    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt(
            prompt=list(prompts), device=pipe.device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
    return EmptyPrompt(embeds, pooled)


def time_ids(image_size: int) -> list[float]:
    """SDXL micro-conditioning: original size, crop top-left, target size."""
    return [float(image_size), float(image_size), 0.0, 0.0, float(image_size), float(image_size)]


def clip_normalisation() -> dict[str, np.ndarray]:
    """The CLIP image mean and std ``CLIPImageProcessor`` applies (the low-level path's start image)."""
    from transformers import CLIPImageProcessorPil  # the PIL backend: the paper's (transformers 4) processor

    processor = CLIPImageProcessorPil()
    return {"clip_image_mean": np.array(processor.image_mean, np.float32),
            "clip_image_std": np.array(processor.image_std, np.float32)}
