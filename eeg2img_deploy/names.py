"""The names every step shares, in one place: stages, precisions, backends, providers, encoders, decoders, constants.

Each is a :class:`enum.StrEnum`, so a member is also its string (``Stage.UNET == "unet"``,
``f"{Precision.FP16}" == "fp16"``) and JSON writes it as that string.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Stage(enum.StrEnum):
    """The graphs of the pipeline, in run order. A new stage is one line here (and its export module).

    ``Artifact.stage`` holds a :class:`Stage` for these names and the plain string for any other one,
    so a manifest with a stage this version does not know still reads.
    """

    ENCODER = "encoder"
    PRIOR = "prior"
    PRIOR_SAMPLER = "prior_sampler"  # the whole DDPM sampler in one graph, one artifact per step count (Artifact.steps)
    UNET = "unet"
    VAE_DECODER = "vae_decoder"
    TAESD_DECODER = "taesd_decoder"
    LOW_LEVEL_ENCODER = "low_level_encoder"  # EEG -> VAE latent (the paper's low-level path)
    VAE_ENCODER = "vae_encoder"  # image -> latent (the low-level path's "image" mode)
    TEXT_ENCODERS = "text_encoders"  # SDXL's two CLIP text encoders (prompts from captions)
    PROJECTOR = "projector"  # image embedding -> GIT's visual tokens (the semantic level)
    CAPTION_PREFILL = "caption_prefill"  # GIT captioner: the first pass, fills the KV cache
    CAPTION_DECODER = "caption_decoder"  # GIT captioner: one token per call

    @classmethod
    def parse(cls, name: str) -> Stage | str:
        try:
            return cls(name)
        except ValueError:
            return str(name)


class Precision(enum.StrEnum):
    FP32 = "fp32"
    FP16 = "fp16"


class Backend(enum.StrEnum):
    """What a folder holds, and (all but ONNX) what runs the graphs: ``--backend``."""

    ONNX = "onnx"  # an export bundle: plain ONNX files (run by onnxruntime)
    ONNXRUNTIME = "onnxruntime"  # ORT-optimized models
    TENSORRT = "tensorrt"  # serialized TensorRT engines


RUNTIME_BACKENDS = (Backend.ONNXRUNTIME, Backend.TENSORRT)  # the choices of ``--backend``


class Provider(enum.StrEnum):
    """onnxruntime's execution provider: ``--provider``; :attr:`execution_provider` is onnxruntime's name of it."""

    CPU = "cpu"
    CUDA = "cuda"
    TENSORRT = "tensorrt"

    @property
    def execution_provider(self) -> str:
        return {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}[self]

    @classmethod
    def parse(cls, name: str) -> Provider:
        """``cuda`` or onnxruntime's ``CUDAExecutionProvider`` (what engine folders record)."""
        return next((p for p in cls if name in (p.value, p.execution_provider)), None) or cls(name)


class EncoderKind(enum.StrEnum):
    """Which EEG encoder a bundle runs: detected from the checkpoint's keys, or a user's ``--encoder-factory``."""

    ATM = "atm"  # the paper's ATM-S (models/atm_encoder.py)
    BRAINFLORA = "brainflora"  # BrainFLORA's UnifiedEncoder, EEG tower + MoE projection (models/brainflora.py)
    CUSTOM = "custom"  # a user's module from --encoder-factory MODULE:CALLABLE (models/custom_encoder.py)


TOKEN_SLICES = ("paper", "refactor")


@dataclass(frozen=True)
class EncoderVariant:
    """The ATM encoder's forward settings that change outputs but not weights (``--token-slice``,
    ``--positional-embedding``): the model runs them (models/atm_encoder.py), the manifest records them."""

    # "paper": keep tokens [:, :63] (subject token + channels Fp1..O1; O2's token is dropped),
    # as in the paper-era scripts. "refactor": keep [:, 1:] (the 63 channel tokens).
    token_slice: str = "paper"
    # Add pe[:, :63] to the channel tokens: only the December 2025 Embed.py does this.
    positional_embedding: bool = False

    def __post_init__(self) -> None:
        if self.token_slice not in TOKEN_SLICES:
            raise ValueError(f"token_slice must be one of {TOKEN_SLICES}, got {self.token_slice!r}")


class Decoder(enum.StrEnum):
    """The latent decoder: ``--vae full`` (SDXL's VAE) or ``--vae tiny`` (TAESDXL)."""

    FULL = "full"
    TINY = "tiny"

    @property
    def stage(self) -> Stage:
        return Stage.VAE_DECODER if self is Decoder.FULL else Stage.TAESD_DECODER


STAGES = tuple(Stage)  # run order
LOW_LEVEL_STAGES = (Stage.LOW_LEVEL_ENCODER, Stage.VAE_DECODER, Stage.VAE_ENCODER)  # the low-level path (the full VAE)
CAPTION_STAGES = (Stage.PROJECTOR, Stage.CAPTION_PREFILL, Stage.CAPTION_DECODER)  # the GIT captioner


class Constants:
    """Names of the arrays in ``constants.safetensors`` (everything the runtime needs besides the graphs)."""

    PROMPT_EMBEDS = "prompt_embeds"  # (1, 77, 2048) SDXL's empty-prompt encoder states
    POOLED_PROMPT_EMBEDS = "pooled_prompt_embeds"  # (1, 1280)
    TIME_IDS = "time_ids"  # (1, 6) SDXL micro-conditioning
    PRIOR_ALPHAS_CUMPROD = "prior_alphas_cumprod"  # (1000,) the prior's DDPM schedule
    EEG_WHITENING = "eeg_whitening"  # (63, 63), only when the bundle ships one
    VAE_SCALING_FACTOR = "vae_scaling_factor"  # (1,) SDXL VAE's latent scale (the low-level path uses it)
    CLIP_IMAGE_MEAN = "clip_image_mean"  # (3,) the low-level start image is normalised as CLIP images are
    CLIP_IMAGE_STD = "clip_image_std"  # (3,)

    @staticmethod
    def euler(steps: int) -> tuple[str, str, str]:
        """(timesteps, sigmas, init_noise_sigma) of the Euler-ancestral table for ``steps`` SDXL-Turbo steps."""
        return f"euler_timesteps_{steps}", f"euler_sigmas_{steps}", f"euler_init_noise_sigma_{steps}"
