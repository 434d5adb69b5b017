"""The host steps of a ``triton-repo`` ensemble (Triton's Python backend; copied as each glue model's ``model.py``).

The fused ensemble ``encoder -> prior_sampler -> unet -> decoder`` has no loop on the host, but two things
in it are not graphs: the noise (the runtime's ``(seed, sample index)`` streams, drawn here with
:class:`~eeg2img_deploy.core.noise.NoiseSource` so the images are ``infer``'s) and Stage II's one
Euler-ancestral step. The config parameter ``role`` picks which:

- ``inputs``: ``seed, sample_index -> prior_noise, guidance, latents`` and the UNet's other inputs
  (``sample``, ``timestep``, the empty-prompt conditioning, ``ip_scale``);
- ``step``: ``latents, noise_pred, seed, sample_index -> denoised`` (the latents the decoder takes).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by Triton's Python backend

# Triton's Python stub runs an isolated interpreter that ignores PYTHONPATH: honour it (a source checkout)
sys.path[:0] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

from eeg2img_deploy.manifest import Constants, read_manifest  # noqa: E402
from eeg2img_deploy.core.noise import NoiseSource  # noqa: E402
from eeg2img_deploy.core.schedulers import EulerAncestral  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        from safetensors.numpy import load_file

        folder = Path(args["model_repository"]) / args["model_version"]
        params = json.loads(args["model_config"])["parameters"]
        self.role = params["role"]["string_value"]
        settings = json.loads((folder / "glue.json").read_text())
        manifest = read_manifest(folder)
        self.c = load_file(str(folder / manifest.constants_file))
        self.prior_steps = settings["prior_steps"]
        self.guidance = np.float32(settings["guidance"])
        self.ip_scale = np.float32(settings["ip_scale"])
        self.latent_shape = tuple(settings["latent_shape"])
        self.unet_dtypes, self.decoder_dtype = settings["unet_dtypes"], settings["decoder_dtype"]
        self.euler = EulerAncestral.from_constants(self.c, settings["unet_steps"])

    def _rows(self, request):
        seeds = pb_utils.get_input_tensor_by_name(request, "seed").as_numpy().reshape(-1)
        indices = pb_utils.get_input_tensor_by_name(request, "sample_index").as_numpy().reshape(-1)
        return seeds, indices

    def _inputs(self, request) -> dict[str, np.ndarray]:
        seeds, indices = self._rows(request)
        b = len(seeds)
        prior = NoiseSource(seeds, b, "prior", first=indices)  # x_T, then one variance draw per later step
        image = NoiseSource(seeds, b, "image", first=indices)
        latents = self.euler.initial_latents(image, self.latent_shape)
        unet = {  # cast to the UNet graph's dtypes, as the runtime casts its feeds
            "sample": self.euler.scale_input(latents, 0),
            "timestep": np.full((b, 1), self.euler.timesteps[0], np.float32),
            "encoder_hidden_states": np.repeat(self.c[Constants.PROMPT_EMBEDS], b, axis=0),
            "text_embeds": np.repeat(self.c[Constants.POOLED_PROMPT_EMBEDS], b, axis=0),
            "time_ids": np.repeat(self.c[Constants.TIME_IDS], b, axis=0),
            "ip_scale": np.full((b, 1), self.ip_scale, np.float32),
        }
        return {
            "prior_noise": np.stack([prior.normal((1024,)) for _ in range(self.prior_steps)], axis=1),
            "guidance": np.full((b, 1), self.guidance, np.float32),
            "latents": latents.astype(np.float32),
            **{k: v.astype(self.unet_dtypes[k]) for k, v in unet.items()},
        }

    def _step(self, request) -> dict[str, np.ndarray]:
        seeds, indices = self._rows(request)
        image = NoiseSource(seeds, len(seeds), "image", first=indices)
        latents = pb_utils.get_input_tensor_by_name(request, "latents").as_numpy()
        eps = pb_utils.get_input_tensor_by_name(request, "noise_pred").as_numpy()
        image.normal(self.latent_shape)  # the initial latents' draw: the step's own draw comes next
        return {"denoised": self.euler.step(eps, 0, latents, image).astype(self.decoder_dtype)}

    def execute(self, requests):
        run = self._inputs if self.role == "inputs" else self._step
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(k, np.ascontiguousarray(v))
                                                           for k, v in run(r).items()]) for r in requests]
