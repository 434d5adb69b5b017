"""One loader for the reference and export: a weights layout in, every torch module it names out.

A :class:`~eeg2img_deploy.weights.WeightsLayout` says where each component is (checkpoint files; the
SDXL-Turbo, IP-Adapter, TAESD and GIT folders or their HF cache, read with ``local_files_only``); the
encoder variant, IP-Adapter scale and low-level latent convention say how to build what the files
alone do not determine. Checkpoints are loaded strictly (``models/checkpoints.py``), so a mismatch is
found here, before the reference runs or export writes a file. ``sources`` records what was loaded
(paths, and the checkpoints' hashes and shapes) for result.json and the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..weights import WeightsLayout


@dataclass
class LoadedModels:
    encoder: Any  # the EEG encoder module (ATMEncoder, BrainFloraEncoder, or a user's)
    prior: Any  # DiffusionPriorUNet
    sdxl: Any  # StableDiffusionXLPipeline with the IP-Adapter loaded
    prompt: Any  # models.sdxl.EmptyPrompt: the empty prompt's embeddings
    taesd: Any = None  # AutoencoderTiny, when the layout has one
    low_level: Any = None  # LowLevelEncoder, when the layout has one
    captioner: Any = None  # GitCaptioner and PixelProjector: both or neither (captions)
    projector: Any = None
    sources: dict[str, Any] = field(default_factory=dict)
    encoder_info: Any = None  # models.encoders.LoadedEncoder: kind, EEG spec, subject ids, provenance


def check_torch_device(device: str) -> None:
    """``--torch-device``: a device this machine has, before any weights load (torch's own error was a traceback
    from deep inside the load: "Torch not compiled with CUDA enabled")."""
    import torch

    from ..errors import OptionError

    kind, _, index = str(device).partition(":")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise OptionError(f"--torch-device {device}: this torch has no MPS device (Apple GPUs only): use cpu")
    if kind == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise OptionError(f"--torch-device {device}: this torch sees no CUDA device (torch {torch.__version__}, "
                              f"built for CUDA {torch.version.cuda or 'none'}): use cpu, or a CUDA build of torch")
        if index and int(index) >= n:
            raise OptionError(f"--torch-device {device}: this machine has {n} CUDA device(s), cuda:0..cuda:{n - 1}")


def load_models(layout: WeightsLayout, *, variant=None, ip_scale: float = 1.0, device: str = "cpu", dtype=None,
                latent_convention: str = "unscaled") -> LoadedModels:
    """Load every component of ``layout`` onto ``device``, in eval mode.

    ``variant``: an ATM encoder's :class:`~eeg2img_deploy.models.atm_encoder.EncoderVariant` (default: the
    paper's); the encoder's kind comes from its keys, or from ``layout.encoder_factory``. ``dtype`` applies to
    Stage II (SDXL, TAESD); encoders, prior and the SDXL VAE stay fp32.
    ``latent_convention``: what the low-level encoder's latents are (``models/low_level_encoder.py``).
    """
    import torch

    check_torch_device(device)
    from .atm_encoder import EncoderVariant
    from .checkpoints import load_prior
    from .encoders import load_eeg_encoder
    from .sdxl import EmptyPrompt, load_sdxl_pipeline

    encoder = load_eeg_encoder(layout.encoder, variant=variant or EncoderVariant(), factory=layout.encoder_factory,
                               channels=layout.encoder_channels)
    prior, prior_prov = load_prior(layout.prior)
    sdxl = load_sdxl_pipeline(layout.sdxl, layout.ip_adapter, ip_scale=ip_scale, device=device, dtype=dtype)
    present = {k: v for k, v in layout.describe().items() if v is not None}  # an absent optional part is not a source
    models = LoadedModels(encoder.module.to(device), prior.to(device), sdxl, EmptyPrompt.encode(sdxl),
                          sources={**present, "encoder": encoder.provenance, "prior": prior_prov.to_dict()},
                          encoder_info=encoder)
    if layout.taesd is not None:
        from diffusers import AutoencoderTiny

        taesd = AutoencoderTiny.from_pretrained(layout.taesd, local_files_only=True, dtype=dtype or torch.float32)
        models.taesd = taesd.to(device).eval()
    if layout.low_level is not None:
        from .checkpoints import load_low_level_encoder

        low_level, ll_prov = load_low_level_encoder(layout.low_level, latent_convention)
        models.low_level = low_level.to(device)
        models.sources["low_level"] = ll_prov.to_dict()
    if layout.git is not None and layout.projector is not None:
        from .git_caption import GitCaptioner
        from .pixel_projector import load_projector

        models.captioner, models.projector = GitCaptioner.load(layout.git, device), load_projector(layout.projector).to(device)
    return models
