"""Export spec of the fused prior sampler: the paper's DDPM + CFG, every step, as one graph per step count.

``cond (B, 1024), noise (B, steps, 1024), guidance (B,) -> image_embeds (B, 1024)``. ``noise[:, 0]`` is
x_T and ``noise[:, k]`` (k >= 1) the variance draw of step k, counting from 1 (the last step, at t = 0,
draws none): :class:`~eeg2img_deploy.core.noise.NoiseSource`'s draws in their order, made on the host. The step table (:func:`~eeg2img_deploy.core.schedulers.ddpm_steps`, the numpy sampler's own
float32 coefficients) is baked in as constants and the loop is unrolled: one graph, no host round trip
per step, and the same arithmetic, op for op, as ``ddpm_sample``.

Each step is one denoiser call on ``2B`` rows, conditional over unconditional (the ``cond_mask`` of the
stepwise ``prior`` graph). The condition terms (8 Linears on a tensor that never changes) are computed
once per call instead of once per step. The time-embedding MLPs run per step on the 2B rows, as in the
stepwise graph: folding them into constants at export (torch's kernels instead of onnxruntime's) moved
the 10-step output by up to 9e-6 from the stepwise sampler; computed in the graph, the fused output is
bit-identical to the stepwise one on onnxruntime's CPU provider.

In the fp16 graph only the denoiser runs in fp16: inputs, output and the sampler's arithmetic stay
fp32 (x0 = (x - sqrt(1 - a) eps) / sqrt(a) divides by 0.007 at t = 980, too much for fp16's 3 digits).
"""

from __future__ import annotations

import numpy as np

from ..manifest import Precision, TensorSpec
from ..core.schedulers import ddpm_steps
from .spec import DEFAULT_TOLERANCE, StageExport

# The fused graph's step counts by default: the paper's 50, and the 10 of the authors' follow-up work.
DEFAULT_FUSED_PRIOR_STEPS = (50, 10)
EMBED_DIM = 1024


def ddpm_alphas_cumprod() -> np.ndarray:
    """The prior's training schedule: diffusers' ``DDPMScheduler()`` defaults, as the paper samples it."""
    from diffusers import DDPMScheduler

    return DDPMScheduler().alphas_cumprod.numpy().astype(np.float32)


def _fused_ddpm(prior, alphas_cumprod: np.ndarray, steps: int):
    import copy

    import torch

    table = [(s.t, *(float(v) for v in (s.sqrt_beta, s.sqrt_alpha, s.x0_coef, s.x_coef, s.noise_std)))
             for s in ddpm_steps(alphas_cumprod, steps)]

    class FusedDDPM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            # Its own copy: exporting the fp16 graph halves the module, and halving and restoring a shared
            # prior would leave rounded weights in the stages exported after it.
            self.prior = copy.deepcopy(prior).eval()

        def forward(self, cond, noise, guidance):
            dtype = next(self.prior.parameters()).dtype  # fp16 after .half(); the sampler's arithmetic stays fp32
            ones = torch.ones_like(guidance)
            rows = torch.cat([ones, ones])  # fp32, 2B rows: conditional over unconditional
            mask = torch.cat([ones, torch.zeros_like(guidance)]).to(dtype)
            cond_terms = self.prior.cond_terms(torch.cat([cond, cond]).to(dtype), mask)  # once for all steps
            g = guidance[:, None]
            x = noise[:, 0]
            for k, (t, sqrt_beta, sqrt_alpha, x0_coef, x_coef, noise_std) in enumerate(table):
                time_terms = self.prior.time_terms(rows * float(t), dtype)
                eps = self.prior.denoise(torch.cat([x, x]).to(dtype), time_terms, cond_terms).float()
                eps_c, eps_u = eps.reshape(2, -1, eps.shape[-1]).unbind(0)
                eps = eps_u + g * (eps_c - eps_u)
                x0 = torch.clamp((x - sqrt_beta * eps) / sqrt_alpha, -1.0, 1.0)
                x = x0_coef * x0 + x_coef * x
                if t > 0:
                    x = x + noise_std * noise[:, k + 1]
            return x

    return FusedDDPM().eval()


def prior_sampler_stage(prior, alphas_cumprod: np.ndarray, steps: int) -> StageExport:
    def make_inputs(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {
            "cond": rng.standard_normal((batch, EMBED_DIM), dtype=np.float32),  # like the encoder's LayerNorm output
            "noise": rng.standard_normal((batch, steps, EMBED_DIM), dtype=np.float32),
            "guidance": rng.uniform(1.0, 7.5, size=batch).astype(np.float32),
        }

    return StageExport(
        name="prior_sampler",
        module=_fused_ddpm(prior, alphas_cumprod, steps),
        inputs=(
            TensorSpec("cond", "float32", ("batch", EMBED_DIM)),
            TensorSpec("noise", "float32", ("batch", steps, EMBED_DIM)),
            TensorSpec("guidance", "float32", ("batch",)),
        ),
        outputs=(TensorSpec("image_embeds", "float32", ("batch", EMBED_DIM)),),
        make_inputs=make_inputs,
        # the fp16 module takes every input in fp32: only its denoiser runs in fp16 (see the module docstring)
        fp32_inputs=frozenset({"cond", "noise", "guidance"}),
        # fp16: the denoiser's ~1e-3 errors pass through every step, and guidance g scales an eps difference
        # by up to 1 + 2g; 10 steps gave 1.4e-2 on the tiny set
        tolerance={**DEFAULT_TOLERANCE, Precision.FP16: 3e-2},
        steps=steps,
    )
