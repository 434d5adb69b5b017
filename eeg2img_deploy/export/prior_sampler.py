"""Export spec of the fused prior sampler: the paper's DDPM + CFG, every step, as one graph per step count.

``cond (B, 1024), noise (B, steps, 1024), guidance (B,) -> image_embeds (B, 1024)``. ``noise[:, 0]`` is
x_T and ``noise[:, k]`` (k >= 1) the variance draw of step k, counting from 1 (the last step, at t = 0,
draws none): :class:`~eeg2img_deploy.core.noise.NoiseSource`'s draws in their order, made on the host.
The step table (:func:`~eeg2img_deploy.core.schedulers.ddpm_steps`, the numpy sampler's own float32
coefficients) is baked in and the loop is unrolled: one graph, no host round trip per step, and the same
arithmetic, op for op, as ``ddpm_sample`` over the stepwise ``prior`` graph.

Each step is one denoiser call on ``2B`` rows, conditional over unconditional (the ``cond_mask`` of the
stepwise graph). What does not change from step to step is not computed per step:

- the condition terms once per call, the 8 condition Linears as one Gemm (their weights side by side) on
  the B conditional rows; the unconditional rows get exact zeros (the stepwise graph's ``cond_mask``);
- the time terms (the 8 timestep-embedding MLPs of each step's fixed timestep) once at export, as
  constants. onnxruntime's CPU provider computes them from a graph of the prior's own ``time_terms``
  (the ops the stepwise graph runs, weights prepacked as in any session), so they are the float32 values
  the stepwise graph computes at run time: exported and run with the same onnxruntime on the same kind
  of CPU, the fused sampler equals the stepwise numpy sampler bit for bit (the test suite asserts it).
  Elsewhere the stepwise graph's own Gemm rounding can differ (other MLAS kernels, another provider):
  then the two differ at that level. Folding with torch's kernels instead drifted 9e-6 at 10 steps, and
  onnxruntime's own constant folding (unpacked Gemm) up to 2e-5; hence the export-time session.
- what each level adds to its input, time term plus condition term (the prior sums them before they meet
  ``x``: ``DiffusionPriorUNet.level_terms``), for every step at once: one Add of the condition terms
  (tiled over the steps) and the time-term constants (one row, step after step), split once. A step then
  adds one tensor per level, not two;
- the noise draws are scaled by their step's std in one multiplication and split once;
- the sampler's scalars and the time terms are initializers, not Constant nodes.

- the guidance weights ``g`` and ``1 - g`` once per call (one multiplication of both halves per step, then a
  sum: ``guided_eps``), and the posterior mean's x0 coefficient taken into the clip's bounds and, with
  ``1 / sqrt(alpha_bar)``, into one per-step factor (``ddpm_sample`` computes the same).

That leaves 60 nodes per step: the denoiser (10 Gemms, 9 LayerNorms, 9 SiLUs of 2 nodes, 12 Adds, the
Concat of its 2B rows) and the sampler (guidance 3 with the Split, the clipped x0 term 4, the x term 2,
noise 1). 50 steps: 3.0k nodes and 501 Gemms, where computing the time MLPs in every step took 7k nodes
and 1308 Gemms; the weights read per step fell from 6.7 M to 3.5 M parameters.

In the fp16 graph only the denoiser runs in fp16: inputs, output and the sampler's arithmetic stay
fp32 (x0 = (x - sqrt(1 - a) eps) / sqrt(a) divides by 0.007 at t = 980, too much for fp16's 3 digits);
the time terms are the fp32 constants rounded to fp16.
"""

from __future__ import annotations

import numpy as np

from ..core.schedulers import ddpm_steps
from ..manifest import Precision, TensorSpec
from .spec import DEFAULT_TOLERANCE, StageExport

# The fused graph's step counts by default: the paper's 50, and the 10 of the authors' follow-up work.
DEFAULT_FUSED_PRIOR_STEPS = (50, 10)
EMBED_DIM = 1024


def ddpm_alphas_cumprod() -> np.ndarray:
    """The prior's training schedule: diffusers' ``DDPMScheduler()`` defaults, as the paper samples it."""
    # the class itself: diffusers' top-level name is a lazy alias that mypy reads as its torch-less dummy
    from diffusers.schedulers.scheduling_ddpm import DDPMScheduler

    return DDPMScheduler().alphas_cumprod.numpy().astype(np.float32)


def time_terms_onnxruntime(prior, timesteps: list[int]) -> list[np.ndarray]:
    """The prior's time terms (encoder levels, then decoder levels; each ``(len(timesteps), d)``) as the
    stepwise graph computes them: the same ops exported the same way, run by onnxruntime's CPU provider."""
    import io

    import onnxruntime as ort
    import torch

    from ..quiet import ONNX_EXPORT, quiet
    from .onnx_io import OPSET

    class TimeTerms(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.prior = prior

        def forward(self, t):
            enc, dec = self.prior.time_terms(t, torch.float32)
            return (*enc, *dec)

    buf = io.BytesIO()
    t = np.asarray(timesteps, np.float32)
    with torch.no_grad(), quiet(*ONNX_EXPORT):
        # torch annotates f as a path; its TorchScript exporter (dynamo=False) writes to a file object too
        torch.onnx.export(TimeTerms().eval(), (torch.from_numpy(t),), buf, input_names=["t"],  # type: ignore[arg-type]
                          dynamic_axes={"t": {0: "n"}}, opset_version=OPSET, dynamo=False)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    return session.run(None, {"t": t})


def _fused_ddpm(prior, alphas_cumprod: np.ndarray, steps: int, fold_time_terms: bool = True):
    import copy

    import torch

    table = ddpm_steps(alphas_cumprod, steps)
    levels = len(prior.encode_time_embedding)
    terms = time_terms_onnxruntime(prior, [s.t for s in table]) if fold_time_terms else []

    class Halves(torch.autograd.Function):
        """Rows ``[:n]`` and ``[n:]`` of a ``(2n, ...)`` tensor: one ONNX Split, not shape arithmetic and two Slices."""

        @staticmethod
        def forward(ctx, x):
            a, b = x.chunk(2, 0)
            return a.clone(), b.clone()

        @staticmethod
        def symbolic(g, x):
            return g.op("Split", x, axis_i=0, num_outputs_i=2, outputs=2)

    class Clip(torch.autograd.Function):
        """``clamp(x, lo, hi)`` as one ONNX Clip on the initializers (torch's own adds a Cast of each bound per use)."""

        @staticmethod
        def forward(ctx, x, lo, hi):
            return torch.clamp(x, lo, hi)

        @staticmethod
        def symbolic(g, x, lo, hi):
            return g.op("Clip", x, lo, hi)

    class Fp32(torch.nn.Module):
        """Buffers that stay as they are when the graph is halved for fp16 (the sampler's arithmetic, and
        the time terms in both precisions); initializers in the graph, so no Constant node per use."""

        def _apply(self, fn, recurse=True):
            return self

    def scalar(v) -> torch.Tensor:
        return torch.tensor(float(v), dtype=torch.float32)

    class FusedDDPM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            # Its own copy: exporting the fp16 graph halves the module, and halving and restoring a shared
            # prior would leave rounded weights in the stages exported after it.
            self.prior = copy.deepcopy(prior).eval()
            # the 8 condition Linears as one (their outputs side by side): one Gemm per call instead of 8
            linears = [*self.prior.encode_cond_embedding, *self.prior.decode_cond_embedding]
            self.cond_widths = [lin.out_features for lin in linears]
            self.cond = torch.nn.Linear(linears[0].in_features, sum(self.cond_widths))
            with torch.no_grad():
                self.cond.weight.copy_(torch.cat([lin.weight for lin in linears]))
                self.cond.bias.copy_(torch.cat([lin.bias for lin in linears]))
            self.c = Fp32()
            if terms:  # all steps' time terms as one row: step after step, each step's levels side by side
                flat = np.concatenate([term[k] for k in range(steps) for term in terms])[None, :]
                self.c.register_buffer("time_fp32", torch.from_numpy(flat))
                self.c.register_buffer("time_fp16", torch.from_numpy(flat).half())
            for k, s in enumerate(table):
                for name in ("sqrt_beta", "x0_scale", "x0_coef", "x_coef"):
                    self.c.register_buffer(f"{name}_{k}", scalar(getattr(s, name)))
                self.c.register_buffer(f"minus_x0_coef_{k}", scalar(-s.x0_coef))
            # noise[:, 0] is x_T (scale 1, exact); noise[:, k + 1] is step k's draw, scaled by its std
            self.c.register_buffer("noise_scale", torch.tensor(
                [1.0, *(float(s.noise_std) for s in table[:-1])], dtype=torch.float32)[:, None])
            self.c.register_buffer("zero", scalar(0.0))
            self.c.register_buffer("one", scalar(1.0))

        def forward(self, cond, noise, guidance):
            c = self.c
            dtype = next(self.prior.parameters()).dtype  # fp16 after .half(); the sampler's arithmetic stays fp32
            half = dtype != torch.float32
            g = guidance[:, None]
            weights = torch.cat([g, c.one - g])  # guidance: g * eps_c + (1 - g) * eps_u as in guided_eps
            # conditional rows get the condition terms, unconditional rows exact zeros (the stepwise cond_mask)
            cond_terms = self.cond(cond.to(dtype) if half else cond)
            cond_terms = torch.cat([cond_terms, cond_terms * c.zero.to(dtype)])
            draws = torch.split((noise * c.noise_scale).reshape(-1, steps * EMBED_DIM), EMBED_DIM, dim=1)
            if fold_time_terms:  # every step's level terms (time + condition) in one Add, split once
                level_terms = torch.split(cond_terms.repeat(1, steps) + getattr(c, "time_fp16" if half else "time_fp32"),
                                          self.cond_widths * steps, dim=1)
            x = draws[0]
            for k, s in enumerate(table):
                x2 = torch.cat([x, x])
                if fold_time_terms:
                    step = level_terms[k * 2 * levels : (k + 1) * 2 * levels]
                    terms = (step[:levels], step[levels:])
                else:  # the time MLPs in every step, as before the fold (benchmarks/prior_graph_fold.py)
                    conds = cond_terms.split(self.cond_widths, dim=1)
                    time = self.prior.time_terms(torch.ones_like(x2[:, 0]) * float(s.t), dtype)
                    terms = self.prior.level_terms(time, (conds[:levels], conds[levels:]))
                eps = self.prior.denoise(x2.to(dtype) if half else x2, terms)
                eps_c, eps_u = Halves.apply((eps.float() if half else eps) * weights)
                eps = eps_c + eps_u
                # x0_coef * clip(x0, -1, 1), as ddpm_sample computes it
                mean = Clip.apply((x - getattr(c, f"sqrt_beta_{k}") * eps) * getattr(c, f"x0_scale_{k}"),
                                  getattr(c, f"minus_x0_coef_{k}"), getattr(c, f"x0_coef_{k}"))
                # t = 0: the posterior mean is that (+ 0 * x, which adds an exact zero)
                x = mean if s.x_coef == 0 else mean + getattr(c, f"x_coef_{k}") * x
                if s.t > 0:
                    x = x + draws[k + 1]
            return x

    return FusedDDPM().eval()


def prior_sampler_stage(prior, alphas_cumprod: np.ndarray, steps: int, *, fold_time_terms: bool = True) -> StageExport:
    """The fused sampler's export spec; ``fold_time_terms=False`` computes the time MLPs in every step instead
    (the graph before the fold, kept for ``benchmarks/prior_graph_fold.py``'s before/after)."""

    def make_inputs(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {
            "cond": rng.standard_normal((batch, EMBED_DIM), dtype=np.float32),  # like the encoder's LayerNorm output
            "noise": rng.standard_normal((batch, steps, EMBED_DIM), dtype=np.float32),
            "guidance": rng.uniform(1.0, 7.5, size=batch).astype(np.float32),
        }

    return StageExport(
        name="prior_sampler",
        module=_fused_ddpm(prior, alphas_cumprod, steps, fold_time_terms),
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
