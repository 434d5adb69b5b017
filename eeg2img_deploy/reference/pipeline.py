"""The PyTorch/diffusers reference pipeline: EEG -> ATM encoder -> prior -> SDXL-Turbo + IP-Adapter -> image.

It is the ground truth every exported stage and the torch-free runtime are checked against, and the
baseline ``bench`` compares with. It loads the weights exactly as a user's files hold them.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..checks import check_finite
from ..core.noise import NoiseSource
from ..core.options import IMAGE_SIZE, RunOptions, check_low_level_size
from ..eeg.spec import DEFAULT_SPEC, EEGSpec, validate_eeg, validate_subject_ids
from ..errors import OptionError, WeightsNotFoundError
from ..manifest import RecommendedRun
from ..weights import WeightsLayout
from . import low_level as ll
from .prior_sampler import sample_prior
from .semantic import caption, require_captioner
from .stage2 import EmptyPrompt, decode, denoise, encode_prompts

log = logging.getLogger(__name__)


@dataclass
class ReferenceResult:
    images: np.ndarray  # (B, H, W, 3) uint8
    eeg_embeds: np.ndarray  # (B, 1024) encoder output
    image_embeds: np.ndarray  # (B, 1024) prior output
    latents: np.ndarray  # (B, 4, H/8, W/8) before the VAE
    low_level_latents: np.ndarray | None = None  # (B, 4, H/8, W/8) the low-level encoder's output
    timings_ms: dict[str, float] = field(default_factory=dict)
    captions: list[str] | None = None  # with caption=True or prompt_from_caption=True
    caption_ids: list[list[int]] | None = None
    prompt_embeds: np.ndarray | None = None  # (B, 77, 2048) when a prompt was used


TIMED_STAGES = ("encoder", "prior", "unet", "decoder")  # keys of timings_ms besides "total", as the runtime's


class ReferencePipeline:
    """``cuda_event_timing``: on CUDA, time each stage with CUDA events (device time) instead of host
    wall time around a synchronize; the total stays host wall time either way (``bench`` sets it)."""

    def __init__(self, encoder, prior, sdxl, prompt: EmptyPrompt, *, taesd=None, sources: dict[str, Any] | None = None,
                 low_level=None, latent_convention: str = "unscaled", captioner=None, projector=None,
                 cuda_event_timing: bool = False, ip_scale: float = 1.0,
                 eeg_spec: EEGSpec = DEFAULT_SPEC, recommended: RecommendedRun = RecommendedRun(), encoder_info=None):
        self.low_level = low_level  # the optional low-level encoder (EEG -> VAE latent)
        self.latent_convention = latent_convention
        self.encoder = encoder
        self.prior = prior
        self.sdxl = sdxl
        self.prompt = prompt
        self.taesd = taesd
        self.sources = sources or {}
        self.captioner = captioner  # GitCaptioner and PixelProjector: both or neither (captions)
        self.projector = projector
        self.cuda_event_timing = cuda_event_timing
        self.ip_scale = ip_scale  # the IP-Adapter scale it loaded with
        self.eeg_spec = eeg_spec  # the trials the encoder takes (a user's encoder: --encoder-channels)
        self.recommended = recommended  # the encoder's authors' run settings (BrainFLORA's), as a bundle records them
        self.encoder_info = encoder_info  # models.encoders.LoadedEncoder (from_weights): what export's stages read

    @classmethod
    def from_weights(cls, layout: WeightsLayout, *, variant=None, ip_scale: float = 1.0, device: str = "cpu", dtype=None,
                     latent_convention: str = "unscaled", cuda_event_timing: bool = False):
        """Load every component (:func:`~eeg2img_deploy.models.load.load_models`, the loader export uses).

        ``dtype`` applies to Stage II; encoders, prior and VAE stay fp32. ``latent_convention``: what the
        low-level encoder's latents are, if the layout has one (:mod:`eeg2img_deploy.models.low_level_encoder`).
        """
        from ..models.load import load_models

        m = load_models(layout, variant=variant, ip_scale=ip_scale, device=device, dtype=dtype,
                        latent_convention=latent_convention)
        return cls(m.encoder, m.prior, m.sdxl, m.prompt, taesd=m.taesd, sources=m.sources, low_level=m.low_level,
                   latent_convention=latent_convention, captioner=m.captioner, projector=m.projector,
                   cuda_event_timing=cuda_event_timing, ip_scale=ip_scale,
                   eeg_spec=m.encoder_info.spec, recommended=RecommendedRun(**m.encoder_info.recommended),
                   encoder_info=m.encoder_info)

    @property
    def device(self):
        return self.sdxl.device

    @contextmanager
    def _timed(self, timings: dict[str, float], stage: str):
        import torch

        if self.cuda_event_timing and self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            end.synchronize()
            timings[stage] = start.elapsed_time(end)
            return
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        yield
        sync()
        timings[stage] = (time.perf_counter() - t0) * 1e3

    def encode(self, eeg: np.ndarray, subject_ids: np.ndarray):
        import torch

        with torch.no_grad():
            x = torch.from_numpy(eeg).to(self.device)
            ids = torch.from_numpy(subject_ids).to(self.device)
            return self.encoder(x, ids)

    def encode_low_level(self, eeg: np.ndarray):
        import torch

        with torch.no_grad():
            return self.low_level(torch.from_numpy(eeg).to(self.device))

    def options(self, options: RunOptions | None = None, **knobs: Any) -> RunOptions:
        """``options`` with ``knobs`` changed, the encoder's recommended values filled in (as a bundle's would be),
        refused where the reference cannot run them."""
        run = RunOptions.make(options, **knobs).with_defaults(self.recommended, ip_scale=self.ip_scale)
        if run.prior_sampler != "ddpm":
            raise OptionError(f"the reference samples the prior with the paper's DDPM only, not --prior-sampler "
                              f"{run.prior_sampler}")
        if run.ip_scale is not None and run.ip_scale != self.ip_scale:
            raise OptionError(f"the reference's IP-Adapter scale is set when it loads ({self.ip_scale:g}): load it with "
                              f"ip_scale={run.ip_scale:g} instead of passing --ip-scale")
        return run

    def __call__(self, eeg: np.ndarray, subject_ids: int | np.ndarray, seed: int | None = None,
                 options: RunOptions | None = None, *, image_size: int = 512, vae: str = "full",
                 **knobs: Any) -> ReferenceResult:
        """Reconstruct images with ``options`` (:class:`~..core.options.RunOptions`; ``knobs``: any of its fields,
        changed for this call). ``image_size`` and ``vae`` are the model's, as ``export`` takes them. The low-level
        path is img2img from the low-level encoder's latent; captions are GIT's (the paper's semantic level)."""
        run = self.options(options, **knobs if seed is None else {**knobs, "seed": seed})
        seed = run.seed
        if (problem := IMAGE_SIZE.problem(image_size)) is not None:
            raise OptionError(f"--image-size: {problem}")
        if vae not in ("full", "tiny"):
            raise OptionError(f"--vae must be 'full' or 'tiny', got {vae!r}")
        if vae == "tiny" and self.taesd is None:
            raise OptionError("--vae tiny needs a TAESDXL folder (weights/taesdxl or --taesd)")
        eeg = validate_eeg(eeg, self.eeg_spec)
        ids = validate_subject_ids(subject_ids, len(eeg))
        if run.low_level:
            if self.low_level is None:
                raise WeightsNotFoundError("--low-level needs a low-level encoder: put it in weights/low-level/ or "
                                           "pass --low-level-encoder PATH")
            check_low_level_size(self.low_level.arch.latent_side, image_size)
        if run.needs_caption:
            require_captioner(self.captioner, self.projector)
        t: dict[str, float] = {}
        captions = None
        t_start = time.perf_counter()
        with self._timed(t, "encoder"):
            eeg_embeds = self.encode(eeg, ids)
        check_finite("encoder", eeg_embeds.float().cpu().numpy())
        r = run.resolved()
        with self._timed(t, "prior"):
            image_embeds = sample_prior(self.prior, eeg_embeds, seed, steps=r.prior_steps, guidance=r.guidance)
        check_finite("prior", image_embeds.float().cpu().numpy())
        text = self.prompt
        prompts = None if run.prompt is None else [run.prompt] * len(eeg)
        if run.needs_caption:
            with self._timed(t, "caption"):
                captions = self._caption(eeg_embeds, seed, steps=run.caption_prior_steps, guidance=r.guidance)
            if run.prompt_from_caption:
                prompts = captions.texts
        if prompts is not None:
            with self._timed(t, "text_encoder"):
                text = encode_prompts(self.sdxl, prompts)
        z = None
        if not run.low_level:
            with self._timed(t, "unet"):
                latents = denoise(self.sdxl, text, image_embeds, seed, steps=r.steps, image_size=image_size)
        else:
            noise = NoiseSource(seed, len(eeg), "low_level")
            with self._timed(t, "low_level"):
                z = self.encode_low_level(eeg)
                start = ll.start_latents(self.sdxl.vae, z, noise, mode=run.low_level_mode,
                                         latent_convention=self.latent_convention, image_size=image_size)
            with self._timed(t, "unet"):
                latents = ll.img2img_denoise(self.sdxl, text, image_embeds, start, noise, steps=r.steps,
                                             strength=run.strength, image_size=image_size)
        check_finite("unet", latents.float().cpu().numpy())
        with self._timed(t, "decoder"):
            images = decode(self.taesd if vae == "tiny" else self.sdxl.vae, latents, tiny=vae == "tiny")
        t["total"] = (time.perf_counter() - t_start) * 1e3
        return ReferenceResult(
            images=images,
            eeg_embeds=eeg_embeds.float().cpu().numpy(),
            image_embeds=image_embeds.float().cpu().numpy(),
            latents=latents.float().cpu().numpy(),
            low_level_latents=None if z is None else z.float().cpu().numpy(),
            timings_ms=t,
            captions=captions.texts if captions else None,
            caption_ids=captions.ids if captions else None,
            prompt_embeds=None if prompts is None else text.prompt_embeds.float().cpu().numpy(),
        )

    def _caption(self, eeg_embeds, seed: int, *, steps: int, guidance: float):
        return caption(self.prior, self.projector, self.captioner, eeg_embeds, seed, steps=steps, guidance=guidance)
