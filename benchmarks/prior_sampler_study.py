"""Which few-step sampler can stand in for the paper's 50-step DDPM prior? Latency and fidelity on CPU.

Default mode TRAINS the full-size ``DiffusionPriorUNet()`` (9.7M parameters) for ``--train-seconds``
on a synthetic conditional distribution whose conditional mean is known, with the paper's objective:
epsilon MSE, DDPM 1000 steps with linear betas 1e-4..0.02, the condition dropped for whole batches
with p=0.1 through the exact-zero unconditional path (``c=None``).

The synthetic distribution (fixed by ``--seed``; ``--task tanh``, the default): a condition latent
z ~ N(0, I_8) and a within-condition latent w ~ N(0, I_4);

    c = sqrt(128) U z + 0.3 n_c                 (1024-d, unit-scale, like an EEG embedding)
    y = tanh(A z + s(z) B w)                    (the "image embedding", inside (-1, 1))
    s(z) = 0.7 + 0.6 sigmoid(z_0)               (a per-condition spread)

with U (1024x8) a random orthonormal basis, A (1024x8) and B (1024x4) Gaussian maps scaled so that
A z has element std 0.8 and B w 0.3 (``--mean-std``, ``--within-std``), n_c ~ N(0, I_1024). So y lies
on a tanh-squashed 12-d manifold with element RMS ~0.56 (mostly inside the sampler's x0 clip of
[-1, 1]), E[y | c] ~ tanh(A z) is a simple, strong function of c (z is recoverable from c almost
exactly), and each condition has a distribution whose width (within-condition variance ~0.04) is
small next to the between-condition spread (~0.27). E[y | c] is estimated by Monte Carlo over w.

Why this scale: with eps prediction, x0 error = eps error * (1 - a_t) / a_t, and at t = 500 of the
paper's linear schedule a_t ~ 0.079 (factor ~11.6). The earlier ``--task sphere`` (element RMS 0.25,
variance 0.0625) needed eps-MSE << 0.0625 * a/(1 - a) ~ 0.005 at t = 500; the 7-minute CPU runs
plateaued at ~0.0136 for t >= 300 (x0-MSE 0.14 at t = 500, worse than predicting zero), the
condition was barely used, and DDPM-50 reached cos 0.20 to E[y | c] (true samples 0.88). With
variance ~0.31 the same eps error is a far smaller fraction of the signal. It was not enough: in
7 minutes the net still sits on an eps-MSE floor of ~0.015 that is flat in t (also at t = 999, where
eps ~ x_t and the attainable error is ~1e-5), so it is an optimisation floor of the identity path,
not a property of the data; at t >= 600 it exceeds the eps error of predicting x0 = 0, the condition
is not used (cond ~= uncond) and DDPM-50 reaches cos 0.34 to E[y | c] (true samples 0.92). See
results/prior_sampler_study.md, "Outcome".

Training recipe (the paper's objective; only the initialisation and optimiser settings are ours):
from the default init this MLP U-Net spends thousands of steps on a plateau (eps-MSE ~0.2 at every
t >= 300, condition ignored) because its only full-width path from x_t to the output is the skip
``SiLU(LayerNorm(Linear(x)))``, which cannot pass x_t linearly (R^2 0.80 for unit-Gaussian input),
while eps = x_t is what high-noise steps need. ``--init identity`` (default) starts ``input_layer``'s
Linear and ``output_layer`` at the identity and the input LayerNorm's bias at +3 (SiLU near-linear,
R^2 0.999), so the skip passes x_t from step 0. ``--dropout`` sets the prior's Dropout in training
(paper 0.1), ``--cond-drop`` the whole-batch ``c=None`` probability (paper 0.1). The sanity gate in
``recommend`` withholds any recommendation unless DDPM-50 gets within 0.05 of true samples' cosine
to E[y | c]. See results/prior_sampler_study.md.

``--prior PATH`` instead loads a real ``diffusion_prior.pt`` (with ``--conds FILE.npy`` of EEG
embeddings, else random N(0, 1) conditions) and runs the same evaluation; metrics that need the
true conditional mean are then null.

Evaluation, guidance 5.0: the paper's DDPM-50 is the reference; DDIM and DPM-Solver++ at 5/10/20
steps on trailing and leading spacing, plus DPM-Solver++ without the x0 clip and DDPM at 10/20
steps as ablations. Per config: latency of one sample at batch 1 (median of runs, the torch model
as eps_fn, cond+uncond batched per call), denoiser calls, and fidelity over conditions x seeds:

- ``cos_ddpm_same_seed``: cosine to the DDPM-50 sample of the same condition and seed (same x_T; an
  ancestral sampler and an ODE solver share nothing else, so this is NOT expected to reach 1);
- ``cos_true_mean``: cosine of each sample to E[y | c] (distributional fidelity);
- ``cos_ddpm_mean``: cosine of each sample to the mean of the DDPM-50 samples of its condition;
- ``spread``: mean pairwise cosine between the samples of one condition across seeds; DDPM-50's is
  the yardstick (a deterministic solver that collapses diversity shows a higher value).

Writes ``prior_sampler_study.json`` and ``.md`` under ``--out-dir``. Not a test.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("prior_sampler_study")

DIM, Z_DIM, W_DIM = 1024, 8, 4
COND_NOISE = 0.3
# "tanh" task (default): y = tanh(A z + s(z) B w); A z has element std MEAN_STD, B w element std WITHIN_STD.
MEAN_STD, WITHIN_STD = 0.8, 0.3
# "sphere" task (the earlier attempts, kept for reproducibility): y on the sphere |y| = 8, element RMS 0.25.
TARGET_NORM = 8.0
GUIDANCE = 5.0
# A few-step config is recommended when its distributional fidelity is this close to DDPM-50's.
TOLERANCE = 0.01
# Sanity gate: DDPM-50's cosine to E[y | c] must be within this of true samples' before samplers are compared.
GATE = 0.05
EMA_DECAY = 0.99  # short CPU runs (~2k steps): a long EMA would average weights from the fast early phase
INIT_LN_BIAS = 3.0

# Earlier attempts (all failed the sanity gate); the JSON repeats these under notes.history.
HISTORY = [
    "colleague 1: sphere task (v1), default init, lr 4e-3, batch 64, 240 s, 2257 steps, eps-MSE 0.049: all samplers ~0 cosine to E[y|c], |x| ~21",
    "colleague 2: sphere task (v1), default init, lr 3e-4, batch 64, 2 threads under load: 249 steps in 150 s, eps-MSE 1.0; DDPM-50 cos 0.03",
    "colleague 2: sphere task (v1), default init, lr 1e-3, batch 256, 1 thread, 240 s, 767 steps: eps-MSE plateau ~0.17 at every t>=300, cond == uncond; DDPM-50 cos 0.03",
    "colleague 2: sphere task (v1), default init + input LayerNorm bias 3 only: same plateau (0.19) after 602 steps",
    "colleague 2: sphere task (v1), identity init, lr 1e-3, batch 256, 180 s, 669 steps: eps-MSE 0.014 at t>=300; DDPM-50 cos 0.355 (8 samples), DDPM-1000 0.15",
    "colleague 2: sphere task (v2, per-condition spread), identity init, lr 1e-3, batch 256, 420 s, 2 threads under load: 499 steps, eps-MSE 0.0165; DDPM-50 cos 0.17",
    (
        "colleague 2: sphere task (v2), identity init, lr 1e-3, batch 256, 420 s, 1 thread: 2345 steps, eps-MSE 0.0136; DDPM-50 cos 0.201 vs true samples 0.881 (gate failed); "
        "data element RMS 0.25: at t=500 x0-MSE 0.14 > 0.0625 of predicting zero"
    ),
    (
        "run 1 (lead's fix): tanh task (element RMS 0.565), identity init, lr 1e-3, batch 256, 420 s, --threads 2, first ~160 s shared with "
        "another CPU benchmark: 1600 steps, loss 0.065; eps-MSE 0.015 flat for t >= 700 (also at t = 999, where ~0 is attainable); "
        "cond ~= uncond; DDPM-50 cos 0.343 vs true samples 0.918 (gate failed), DDPM-1000 0.27"
    ),
    (
        "run 2 (variant): same but --init identity-zero, --threads 1: 2326 steps, loss 0.058; the same eps-MSE floor (0.0149 at t = 999); "
        "cond == uncond to 4 digits, DDPM-50 cos 0.014 (worse: the zero-gain last decoder block also starts the condition path at zero gradient)"
    ),
]


@dataclass(frozen=True)
class SyntheticTask:
    """``kind='tanh'``: y = tanh(A z + s(z) B w), a squashed 12-d manifold with element RMS ~0.56.

    ``kind='sphere'``: the earlier task, y = clip(8 normalize(V z / sqrt(8) + s(z) W w / 2), -1, 1), RMS 0.25.
    In both, c = sqrt(128) U z + 0.3 n_c encodes z almost exactly.
    """

    u: np.ndarray  # (1024, 8)  condition basis (orthonormal)
    v: np.ndarray  # (1024, 8)  target mean map: A (tanh) or orthonormal V (sphere)
    w: np.ndarray  # (1024, 4)  within-condition map: B (tanh) or orthonormal W (sphere)
    kind: str = "tanh"

    @classmethod
    def create(cls, seed: int, kind: str = "tanh", mean_std: float = MEAN_STD, within_std: float = WITHIN_STD) -> SyntheticTask:
        rng = np.random.default_rng(seed)
        basis = lambda k: np.linalg.qr(rng.standard_normal((DIM, k)))[0].astype(np.float32)  # noqa: E731
        if kind == "sphere":
            return cls(basis(Z_DIM), basis(Z_DIM), basis(W_DIM), kind)
        u = basis(Z_DIM)
        a = (mean_std / math.sqrt(Z_DIM) * rng.standard_normal((DIM, Z_DIM))).astype(np.float32)
        b = (within_std / math.sqrt(W_DIM) * rng.standard_normal((DIM, W_DIM))).astype(np.float32)
        return cls(u, a, b, kind)

    def conditions(self, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = math.sqrt(DIM / Z_DIM) * z @ self.u.T
        return (c + COND_NOISE * rng.standard_normal(c.shape)).astype(np.float32)

    def targets(self, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        w = rng.standard_normal((z.shape[0], W_DIM))
        if self.kind == "tanh":
            spread = 0.7 + 0.6 / (1.0 + np.exp(-z[:, :1]))  # per-condition width, 0.7 .. 1.3
            return np.tanh(z @ self.v.T + spread * (w @ self.w.T)).astype(np.float32)
        spread = 0.3 + 0.4 / (1.0 + np.exp(-z[:, :1]))
        y = z @ self.v.T / math.sqrt(Z_DIM) + spread * (w @ self.w.T) / math.sqrt(W_DIM)
        y = TARGET_NORM * y / np.linalg.norm(y, axis=-1, keepdims=True)
        return np.clip(y, -1.0, 1.0).astype(np.float32)

    def true_mean(self, z: np.ndarray, rng: np.random.Generator, draws: int = 512) -> np.ndarray:
        return np.stack([self.targets(np.repeat(zi[None], draws, 0), rng).mean(0) for zi in z])


def alphas_cumprod() -> np.ndarray:
    from diffusers import DDPMScheduler

    return DDPMScheduler().alphas_cumprod.numpy().astype(np.float32)  # the paper's scheduler


def identity_init(model, zero_decoder: bool = False) -> None:
    """Start the x_t -> eps path at (near) identity; see the module docstring.

    ``zero_decoder`` (``--init identity-zero``, tried once, made things worse: see HISTORY): also zero the last decoder block's LayerNorm gain, so the
    decoder branch adds exactly 0 to the skip at step 0 (a zero-init residual branch) instead of O(1)
    random features, and set ``output_layer`` to invert SiLU's linearisation at +3 (weight I / SiLU'(3),
    bias -SiLU(3) / SiLU'(3)), so that the untrained net outputs LayerNorm(x_t) ~ x_t, not 1.09 x_t - 0.14.
    """
    import torch

    with torch.no_grad():
        model.input_layer[0].weight.copy_(torch.eye(DIM))
        model.input_layer[0].bias.zero_()
        model.input_layer[1].bias.fill_(INIT_LN_BIAS)
        model.output_layer.weight.copy_(torch.eye(DIM))
        model.output_layer.bias.fill_(-INIT_LN_BIAS)
        if zero_decoder:
            model.decode_layers[-1][1].weight.zero_()
            bias = torch.tensor(INIT_LN_BIAS)
            slope = torch.sigmoid(bias) * (1 + bias * (1 - torch.sigmoid(bias)))  # SiLU'(3) = 1.088
            model.output_layer.weight.copy_(torch.eye(DIM) / slope)
            model.output_layer.bias.fill_(float(-torch.nn.functional.silu(bias) / slope))


def train_prior(task: SyntheticTask, seconds: float, batch: int, lr: float, seed: int, init: str = "identity",
                dropout: float = 0.1, cond_drop: float = 0.1):
    """The paper's objective on fresh synthetic batches for a wall-clock budget; returns the EMA model."""
    import copy

    import torch
    from rich.progress import Progress

    from eeg2img_deploy.models.diffusion_prior import DiffusionPriorUNet

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 1)
    model = DiffusionPriorUNet(dropout=dropout)
    if init.startswith("identity"):
        identity_init(model, zero_decoder=init == "identity-zero")
    ema = copy.deepcopy(model).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    ac = torch.from_numpy(alphas_cumprod())
    losses, step, start = [], 0, time.perf_counter()
    with Progress(transient=True) as bar:
        task_id = bar.add_task("training prior", total=seconds)
        while (elapsed := time.perf_counter() - start) < seconds:
            frac = elapsed / seconds
            for group in opt.param_groups:  # 100-step warmup, then cosine (over wall time) to 10%
                group["lr"] = lr * min(1.0, (step + 1) / 100) * (0.1 + 0.45 * (1 + math.cos(math.pi * frac)))
            z = rng.standard_normal((batch, Z_DIM))
            c = torch.from_numpy(task.conditions(z, rng))
            y = torch.from_numpy(task.targets(z, rng))
            t = torch.randint(0, len(ac), (batch,))
            eps = torch.randn_like(y)
            a = ac[t][:, None]
            x_t = a.sqrt() * y + (1 - a).sqrt() * eps
            drop = rng.random() < cond_drop  # whole batch unconditional, exact-zero cond terms
            loss = torch.nn.functional.mse_loss(model(x_t, t.float(), None if drop else c), eps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                decay = min(EMA_DECAY, (1 + step) / (10 + step))
                for p_ema, p in zip(ema.parameters(), model.parameters()):
                    p_ema.lerp_(p, 1 - decay)
            losses.append(loss.item())
            step += 1
            if step % 250 == 0:
                log.info("step %d (%.0f s): loss %.4f (last 100), lr %.2e", step, elapsed, np.mean(losses[-100:]), opt.param_groups[0]["lr"])
            bar.update(task_id, completed=min(elapsed, seconds), description=f"training prior, loss {np.mean(losses[-50:]):.4f}")
    log.info("trained %d steps of batch %d in %.0f s, final loss %.4f", step, batch, seconds, np.mean(losses[-100:]))
    curve = [float(np.mean(losses[i : i + 100])) for i in range(0, len(losses), max(100, len(losses) // 20))]
    info = {"steps": step, "batch": batch, "lr": lr, "seconds": seconds, "init": init, "ema_decay": EMA_DECAY,
            "dropout": dropout, "cond_drop": cond_drop, "torch_threads": torch.get_num_threads(),
            "final_loss": float(np.mean(losses[-100:])), "loss_curve": curve}
    return ema, info


def diagnose(model, task: SyntheticTask, seed: int) -> dict:
    """Held-out x0-prediction error per t (cond vs exact-zero uncond) and a DDPM-1000 check."""
    import torch

    from eeg2img_deploy.core.noise import NoiseSource
    from eeg2img_deploy.core.schedulers import ddpm_sample

    rng = np.random.default_rng(seed + 7)
    ac_np = alphas_cumprod()
    z = rng.standard_normal((256, Z_DIM))
    c, y = torch.from_numpy(task.conditions(z, rng)), torch.from_numpy(task.targets(z, rng))
    tm = task.true_mean(z[:64], rng, 256)
    per_t = []
    with torch.inference_mode():
        for t in (10, 100, 300, 500, 700, 850, 950, 999):
            a = float(ac_np[t])
            eps = torch.randn(y.shape, generator=torch.Generator().manual_seed(t))
            x_t = math.sqrt(a) * y + math.sqrt(1 - a) * eps
            row = {"t": t, "zero_x0_eps_mse": float((y**2).mean()) * a / (1 - a)}  # eps-MSE of predicting x0 = 0
            for name, cc in (("cond", c), ("uncond", None)):
                e = model(x_t, torch.full((len(y),), float(t)), cc)
                x0 = ((x_t - math.sqrt(1 - a) * e) / math.sqrt(a)).clamp(-1, 1)
                row[f"{name}_eps_mse"] = float(((e - eps) ** 2).mean())
                row[f"{name}_x0_mse"] = float(((x0 - y) ** 2).mean())
                row[f"{name}_cos_x0_true_mean"] = float(cosine(x0[:64].numpy(), tm).mean())
            per_t.append(row)
            log.info("t=%3d  x0-MSE cond %.4f uncond %.4f  cos(x0, E[y|c]) cond %.3f uncond %.3f", t, row["cond_x0_mse"],
                     row["uncond_x0_mse"], row["cond_cos_x0_true_mean"], row["uncond_cos_x0_true_mean"])
    eps_fn = torch_eps_fn(model)
    out = ddpm_sample(eps_fn, c[:8].numpy(), NoiseSource(seed + 99, 8), ac_np, steps=1000, guidance=GUIDANCE)
    ddpm1000 = float(cosine(out, tm[:8]).mean())
    log.info("DDPM-1000 (8 samples): cos to E[y|c] %.4f, |x| %.2f", ddpm1000, np.linalg.norm(out, axis=-1).mean())
    return {"data_x0_mse_floor_note": "x0 MSE of the zero prediction = mean(y^2) = %.4f" % float((y**2).mean()),
            "per_t": per_t, "ddpm1000_cos_true_mean_8_samples": ddpm1000}


def torch_eps_fn(model, calls: list | None = None):
    """The runtime's PriorDenoiser contract over the torch model."""
    import torch

    def eps_fn(x, t, c, cond_mask):
        if calls is not None:
            calls.append(x.shape[0])
        with torch.inference_mode():
            out = model(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(c), torch.from_numpy(cond_mask))
        return out.numpy()

    return eps_fn


def sampler_configs() -> list[dict]:
    from functools import partial

    from eeg2img_deploy.runtime.prior_solvers import ddim_sample_spaced, dpmpp_sample_spaced
    from eeg2img_deploy.core.schedulers import ddpm_sample

    configs = [dict(name="ddpm", steps=50, spacing="leading", clip=True, fn=ddpm_sample, role="reference")]
    configs += [dict(name="ddpm", steps=n, spacing="leading", clip=True, fn=ddpm_sample, role="ablation") for n in (10, 20)]
    for name, fn in (("ddim", ddim_sample_spaced), ("dpmpp", dpmpp_sample_spaced)):
        for spacing in ("trailing", "leading"):
            for n in (5, 10, 20):
                role = "candidate" if spacing == "trailing" else "spacing"
                configs.append(dict(name=name, steps=n, spacing=spacing, clip=True, fn=partial(fn, spacing=spacing), role=role))
    for n in (5, 10, 20):
        fn = partial(dpmpp_sample_spaced, spacing="trailing", clip_x0=False)
        configs.append(dict(name="dpmpp", steps=n, spacing="trailing", clip=False, fn=fn, role="ablation"))
    return configs


def config_label(cfg: dict) -> str:
    return f"{cfg['name']}-{cfg['steps']} {cfg['spacing']}" + ("" if cfg["clip"] else " no-clip")


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)


def mean_pairwise_cosine(samples: np.ndarray) -> float:
    """samples (S, C, D): mean over conditions and seed pairs of cos(sample_i, sample_j)."""
    unit = samples / (np.linalg.norm(samples, axis=-1, keepdims=True) + 1e-12)
    gram = np.einsum("scd,tcd->cst", unit, unit)
    s = samples.shape[0]
    return float((gram.sum((1, 2)) - np.trace(gram, axis1=1, axis2=2)).mean() / (s * (s - 1)))


def sample_all(cfg, eps_fn, conds, seeds, ac) -> np.ndarray:
    from eeg2img_deploy.core.noise import NoiseSource

    return np.stack(
        [cfg["fn"](eps_fn, conds, NoiseSource(s, len(conds)), ac, steps=cfg["steps"], guidance=GUIDANCE) for s in seeds]
    )


def measure_latency(cfg, model, cond, ac, runs: int, thread_counts=(1,)) -> dict:
    import torch

    from eeg2img_deploy.core.noise import NoiseSource

    out, previous = {}, torch.get_num_threads()
    for threads in thread_counts:
        torch.set_num_threads(threads)
        calls: list = []
        eps_fn = torch_eps_fn(model, calls)
        times = []
        for r in range(runs + 2):  # two warm-ups
            t0 = time.perf_counter()
            cfg["fn"](eps_fn, cond, NoiseSource(r, 1), ac, steps=cfg["steps"], guidance=GUIDANCE)
            times.append(time.perf_counter() - t0)
        out[f"latency_ms_{threads}t"] = 1e3 * statistics.median(times[2:])
        out["calls"] = len(calls) // (runs + 2)
    torch.set_num_threads(previous)
    return out


def evaluate(model, conds, true_mean, seeds, latency_runs, thread_counts=(1,)) -> list[dict]:
    from rich.progress import track

    ac = alphas_cumprod()
    eps_fn = torch_eps_fn(model)
    results, reference, latency = [], None, {}
    for cfg in track(sampler_configs(), description="sampling configs"):
        t0 = time.perf_counter()
        samples = sample_all(cfg, eps_fn, conds, seeds, ac)  # (S, C, D)
        if reference is None:
            reference = samples
        row = {"sampler": cfg["name"], "steps": cfg["steps"], "spacing": cfg["spacing"], "clip_x0": cfg["clip"], "role": cfg["role"]}
        row["cos_ddpm_same_seed"] = float(cosine(samples, reference).mean())
        row["cos_ddpm_mean"] = float(cosine(samples, reference.mean(0)[None]).mean())
        row["cos_true_mean"] = None if true_mean is None else float(cosine(samples, true_mean[None]).mean())
        row["cos_true_mean_of_sample_mean"] = None if true_mean is None else float(cosine(samples.mean(0), true_mean).mean())
        row["spread"] = mean_pairwise_cosine(samples)
        row["norm_mean"] = float(np.linalg.norm(samples, axis=-1).mean())
        row["max_abs"] = float(np.abs(samples).max())
        # cost depends only on the sampler and steps: spacing/clip variants reuse the measurement
        key = (cfg["name"], cfg["steps"])
        if key not in latency:
            latency[key] = measure_latency(cfg, model, conds[:1], ac, latency_runs, thread_counts)
        row.update(latency[key])
        log.info("%-26s cos_true_mean %s  spread %.4f  %5.1f ms (eval %.0f s)", config_label(cfg),
                 "n/a" if row["cos_true_mean"] is None else f"{row['cos_true_mean']:.4f}", row["spread"],
                 row["latency_ms_1t"], time.perf_counter() - t0)
        results.append(row)
    return results


def recommend(rows: list[dict], data_cos_true_mean: float | None = None) -> dict:
    """Cheapest clipped trailing candidate whose distributional fidelity is within TOLERANCE of DDPM-50's.

    No choice when the reference itself misses the data (an under-trained synthetic prior): every
    sampler then agrees on noise and the rule would pick the cheapest for the wrong reason.
    """
    ref = rows[0]
    key = "cos_true_mean" if ref["cos_true_mean"] is not None else "cos_ddpm_mean"
    if data_cos_true_mean is not None and ref[key] < data_cos_true_mean - GATE:
        reason = f"DDPM-50 samples reach cos {ref[key]:.3f} to E[y|c] vs {data_cos_true_mean:.3f} for true samples: prior under-trained"
        return {"metric": key, "tolerance": TOLERANCE, "choice": None, "row": None, "reason": reason}
    ok = [
        r for r in rows
        if r["role"] == "candidate"
        and r[key] >= ref[key] - TOLERANCE
        and abs(r["spread"] - ref["spread"]) <= TOLERANCE
    ]
    best = min(ok, key=lambda r: (r["calls"], -r[key])) if ok else None
    reason = None if best else f"no trailing candidate within {TOLERANCE} of DDPM-50 on {key} and spread"
    return {"metric": key, "tolerance": TOLERANCE, "choice": best and f"{best['sampler']}-{best['steps']}", "row": best, "reason": reason}


def machine_info() -> dict:
    """bench's machine record, the library versions and the load average at the end."""
    from eeg2img_deploy.bench import library_versions
    from eeg2img_deploy.bench import machine_info as bench_machine

    return {**bench_machine(), "load_average_at_end": os.getloadavg(), "versions": library_versions()}


def write_markdown(path: Path, report: dict) -> None:
    rows, rec = report["results"], report["recommendation"]
    ref = rows[0]
    lines = [
        "# Prior sampler study: few-step solvers vs the paper's DDPM-50",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']['cpu']}, {report['machine']['logical_cores']} cores (shared; load average "
        f"{report.get('load_average_at_start', [float('nan')])[0]:.1f} at start, {report['machine']['load_average_at_end'][0]:.1f} at end); "
        + ", ".join(f"{k} {v}" for k, v in report["machine"]["versions"].items()),
        "",
        f"Mode: **{report['mode']}**. {len(report['eval']['seeds'])} seeds x {report['eval']['conditions']} conditions, guidance {GUIDANCE}.",
        "",
    ]
    if report["mode"] == "synthetic":
        tr, ev, tk = report["training"], report["eval"], report.get("task", {"kind": "sphere"})
        lines += ["## The synthetic distribution", ""]
        if tk["kind"] == "tanh":
            lines += [
                "Condition latent z ~ N(0, I_8), within-condition latent w ~ N(0, I_4); U (1024x8) a random orthonormal basis,",
                f"A (1024x8) and B (1024x4) random Gaussian maps scaled so that A z has element std {tk['mean_std']} and B w {tk['within_std']}:",
                "",
                "    c = sqrt(128) U z + 0.3 n_c                          (1024-d condition, like an EEG embedding; encodes z almost exactly)",
                "    y = tanh(A z + s(z) B w)                             (the \"image embedding\", inside (-1, 1) by construction)",
                "    s(z) = 0.7 + 0.6 sigmoid(z_0)                        (per-condition spread)",
                "",
                (
                    f"y lies on a tanh-squashed 12-d manifold: element RMS {ev['data_element_rms']:.3f} (variance {ev['data_element_rms']**2:.3f}; "
                    f"{100 * ev['data_frac_abs_above_0.9']:.1f}% of elements have |y| > 0.9), within-condition variance "
                    f"{ev['data_within_var']:.4f} of a total {ev['data_total_var']:.4f}."
                ),
                "The condition -> mean map is simple and strong (E[y | c] ~ tanh(A z)), the per-condition spread small next to",
                "the between-condition spread, and the unconditional mean ~0. E[y | c] is a 512-draw Monte Carlo mean over w.",
            ]
        else:
            lines += [
                "Condition latent z ~ N(0, I_8), within-condition latent w ~ N(0, I_4); U, V (1024x8), W (1024x4) random",
                "orthonormal bases:",
                "",
                "    c = sqrt(128) U z + 0.3 n_c                          (1024-d condition, like an EEG embedding)",
                "    y = clip(8 normalize(V z / sqrt(8) + s(z) W w / 2), -1, 1)",
                "    s(z) = 0.3 + 0.4 sigmoid(z_0)                        (per-condition spread)",
                "",
                "y lies on an 11-d manifold on the sphere |y| = 8 (element RMS 0.25, well inside the clip range);",
                "each condition has a distribution of condition-dependent width; E[y | c] is a 512-draw Monte Carlo mean.",
            ]
        lines += [
            f"**Yardstick, true samples of y:** cosine to E[y | c] = {report['eval']['data_cos_true_mean']:.4f}, "
            f"mean pairwise cosine between samples of one condition = {report['eval']['data_spread']:.4f}.",
            "",
            f"Full-size `DiffusionPriorUNet()` (dropout {tr.get('dropout', 0.1)} in training) trained from scratch for {tr['seconds']:.0f} s on this CPU: "
            f"{tr['steps']} steps of batch {tr['batch']} (AdamW lr {tr['lr']}, 100-step warmup, cosine decay to 10%, "
            f"EMA {tr.get('ema_decay', EMA_DECAY)}, init `{tr.get('init', 'default')}`, {tr.get('torch_threads', '?')} torch thread(s)), final eps-MSE {tr['final_loss']:.4f};",
            f"paper objective (eps MSE, DDPM 1000 linear betas, whole-batch condition drop p={tr.get('cond_drop', 0.1)} via `c=None`).",
            "",
            "Init `identity`: `input_layer`'s Linear and `output_layer` start at the identity and the input LayerNorm's bias",
            "at +3. From torch's default init the net sits for thousands of steps on a plateau (eps-MSE ~0.2 at every",
            "t >= 300, cond and uncond outputs identical): its only full-width path from x_t to the output is the skip",
            "`SiLU(LayerNorm(Linear(x)))`, which passes x_t with R^2 0.80 only, while high-noise steps need eps ~ x_t;",
            "every sampler then integrates that error into noise (the previous version of this study: cosine ~0 to E[y|c]",
            "for all samplers). This changes the starting point only, not the architecture, objective or schedule.",
        ]
        if tr.get("init") == "identity-zero":
            lines += [
                "Init `identity-zero` adds two things at step 0: the last decoder block's LayerNorm gain is 0 (its branch adds",
                "exactly 0 to the skip instead of O(1) random features) and `output_layer` inverts SiLU's slope at +3",
                "(weight I / 1.088, bias -2.858 / 1.088), so the untrained net outputs ~LayerNorm(x_t) ~ x_t.",
            ]
        lines += ["",
        ]
        if "diagnostics" in report:
            dg = report["diagnostics"]
            lines += [
                "### Sanity checks on the trained prior (held-out data)",
                "",
                "| t | eps-MSE cond | eps-MSE if x0 = 0 | x0-MSE cond | x0-MSE uncond | cos(x0 pred, E[y|c]) cond | uncond |",
                "|---:|---:|---:|---:|---:|---:|---:|",
            ]
            lines += [
                f"| {r['t']} | {r['cond_eps_mse']:.4f} | {r.get('zero_x0_eps_mse', float('nan')):.4f} | {r['cond_x0_mse']:.4f} | {r['uncond_x0_mse']:.4f} | {r['cond_cos_x0_true_mean']:.3f} | {r['uncond_cos_x0_true_mean']:.3f} |"
                for r in dg["per_t"]
            ]
            lines += [
                "",
                f"(x0 clipped to [-1, 1]; {dg['data_x0_mse_floor_note']}.) DDPM-1000, guidance {GUIDANCE}, 8 samples: "
                f"cosine to E[y | c] {dg['ddpm1000_cos_true_mean_8_samples']:.4f}.",
                "",
            ]
    lines += [
        "## Results",
        "",
        "Latency: one sample, batch 1, the torch model as eps_fn (one batched cond+uncond call per step), median of "
        f"{report['eval']['latency_runs']} runs after 2 warm-ups, torch threads {report['eval'].get('latency_threads', [1, 2])}.",
        "`cos true mean`: cosine of each sample to E[y | c]; `cos DDPM mean`: to the mean of the DDPM-50 samples of",
        "that condition; `cos DDPM same seed`: to the DDPM-50 sample from the same x_T; `spread`: mean pairwise cosine",
        "between seeds of one condition (DDPM-50's is the yardstick).",
        "",
        "| sampler | steps | spacing | clip | calls | ms (1t) | speed-up | cos true mean | cos DDPM mean | cos DDPM same seed | spread |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    for r in rows:
        lines.append(
            f"| {r['sampler']}{' (reference)' if r['role'] == 'reference' else ''} | {r['steps']} | {r['spacing']} | "
            f"{'yes' if r['clip_x0'] else 'no'} | {r['calls']} | {r['latency_ms_1t']:.1f} | "
            f"{ref['latency_ms_1t'] / r['latency_ms_1t']:.1f}x | {fmt(r['cos_true_mean'])} | {fmt(r['cos_ddpm_mean'])} | "
            f"{fmt(r['cos_ddpm_same_seed'])} | {r['spread']:.4f} |"
        )
    lines += ["", "## Recommendation", ""]
    if rec["choice"]:
        r = rec["row"]
        lines.append(
            f"Offer **`--prior-sampler {r['sampler']}` with {r['steps']} steps** (trailing spacing, clipped x0) as the fast option: "
            f"{r['calls']} denoiser calls instead of 50, {ref['latency_ms_1t'] / r['latency_ms_1t']:.1f}x faster here; "
            f"{rec['metric']} {r[rec['metric']]:.4f} vs DDPM-50's {ref[rec['metric']]:.4f}, spread {r['spread']:.4f} vs {ref['spread']:.4f}. "
            "Keep the paper's DDPM-50 the default."
        )
    else:
        lines.append(f"**No recommendation from this run** ({rec['reason']}); keep DDPM-50.")
    lines += [
        f"(Rule: the fewest calls among clipped trailing DDIM/DPM-Solver++ configs whose {rec['metric']} is at least",
        f"DDPM-50's minus {TOLERANCE} and whose spread is within {TOLERANCE} of DDPM-50's; only if DDPM-50 itself passes",
        f"the sanity gate: its cos true mean within {GATE} of true samples'"
        + (f", here {ref['cos_true_mean']:.4f} vs {report['eval']['data_cos_true_mean']:.4f})." if ref["cos_true_mean"] is not None else ")."),
        "",
        "## Caveats",
        "",
        "- DDPM is ancestral (49 fresh noise draws); DDIM/DPM-Solver++ are deterministic after x_T. Only x_T is shared, so",
        "  `cos DDPM same seed` measures path agreement, not quality; compare it against the spread.",
        "- The prior here is trained for minutes on a synthetic task, not the paper's checkpoint; solver error depends on",
        "  how smooth the learned eps is. Re-run with `--prior diffusion_prior.pt --conds eeg_embeddings.npy` on the",
        "  real checkpoint before quoting numbers for images.",
        "- Latency is on a shared 2-core VM (other jobs may have been running; load averages above and in the JSON); the",
        "  call count is the portable number: at batch 1 the prior is memory-bound and time is proportional to calls.",
        "- Spread: DDPM-50's pairwise cosine is compared with true samples' in the yardstick line above; a sampler whose",
        "  spread is well above DDPM-50's collapses diversity, one well below it adds noise.",
        "- The leading-spacing rows use the paper's DDPM grid (t = 900..0 at 10 steps) for both solvers; diffusers'",
        "  DPMSolverMultistep 'leading' grid differs (it drops t=0).",
    ]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-seconds", type=float, default=420.0, help="CPU training budget (synthetic mode)")
    parser.add_argument("--train-batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--init", choices=("identity", "identity-zero", "default"), default="identity",
                        help="'default': torch's init, which plateaus for thousands of steps (see docstring); "
                        "'identity-zero': identity plus a zero-gain last decoder LayerNorm")
    parser.add_argument("--task", choices=("tanh", "sphere"), default="tanh",
                        help="synthetic distribution: 'tanh' (RMS ~0.56, default) or the earlier 'sphere' (RMS 0.25)")
    parser.add_argument("--mean-std", type=float, default=MEAN_STD, help="tanh task: element std of A z (between conditions)")
    parser.add_argument("--within-std", type=float, default=WITHIN_STD, help="tanh task: element std of B w (within a condition)")
    parser.add_argument("--dropout", type=float, default=0.1, help="the prior's Dropout in training (paper: 0.1)")
    parser.add_argument("--cond-drop", type=float, default=0.1, help="probability of a whole-batch c=None step (paper: 0.1)")
    parser.add_argument("--prior", type=Path, help="a real diffusion_prior.pt instead of training")
    parser.add_argument("--conds", type=Path, help="(N, 1024) .npy of EEG embeddings for --prior")
    parser.add_argument("--conditions", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--latency-runs", type=int, default=11)
    parser.add_argument("--latency-threads", default="1", help="comma-separated torch thread counts for latency")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for training and bulk sampling (1 is faster on a busy 2-core VM)")
    parser.add_argument("--seed", type=int, default=0, help="fixes the synthetic task, training and conditions")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--smoke", action="store_true",
                        help="1 s of training, 2 conditions x 2 seeds, 1 latency run: checks the script, measures nothing")
    args = parser.parse_args(argv)
    if args.smoke:
        args.train_seconds, args.conditions, args.seeds, args.latency_runs = 1.0, 2, 2, 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    import torch

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed + 2)
    report: dict = {"command": " ".join(["python", Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), "args": {k: str(v) for k, v in vars(args).items()}}
    report["load_average_at_start"] = os.getloadavg()
    thread_counts = tuple(int(x) for x in args.latency_threads.split(","))
    start = time.perf_counter()
    if args.prior is not None:
        from eeg2img_deploy.models.checkpoints import load_prior

        model, provenance = load_prior(args.prior)
        report["mode"], report["prior"] = "checkpoint", {"file": provenance.file_name, "sha256": provenance.sha256}
        if args.conds is not None:
            conds = np.load(args.conds).astype(np.float32)[: args.conditions]
            if conds.ndim != 2 or conds.shape[1] != DIM:
                raise SystemExit(f"--conds {args.conds}: expected (N, {DIM}) EEG embeddings, found {conds.shape}")
        else:
            conds = rng.standard_normal((args.conditions, DIM)).astype(np.float32)
        true_mean, data_stats = None, {}
    else:
        task = SyntheticTask.create(args.seed, args.task, args.mean_std, args.within_std)
        report["task"] = {"kind": task.kind, "mean_std": args.mean_std if task.kind == "tanh" else None,
                          "within_std": args.within_std if task.kind == "tanh" else None}
        model, report["training"] = train_prior(task, args.train_seconds, args.train_batch, args.lr, args.seed, args.init,
                                                args.dropout, args.cond_drop)
        model.eval()
        report["diagnostics"] = diagnose(model, task, args.seed)
        report["mode"] = "synthetic"
        z = rng.standard_normal((args.conditions, Z_DIM))
        conds = task.conditions(z, rng)
        true_mean = task.true_mean(z, rng)
        data = np.stack([task.targets(z, rng) for _ in range(args.seeds)])  # (S, C, D) true samples
        data_stats = {"data_cos_true_mean": float(cosine(data, true_mean[None]).mean()), "data_spread": mean_pairwise_cosine(data),
                      "data_element_rms": float(np.sqrt((data**2).mean())), "data_within_var": float(data.var(0).mean()),
                      "data_total_var": float(data.var((0, 1)).mean()), "data_frac_abs_above_0.9": float((np.abs(data) > 0.9).mean()),
                      "data_norm_mean": float(np.linalg.norm(data, axis=-1).mean())}
    model.eval()
    seeds = list(range(1000, 1000 + args.seeds))
    report["eval"] = {"conditions": len(conds), "seeds": seeds, "guidance": GUIDANCE, "latency_runs": args.latency_runs,
                      "latency_threads": list(thread_counts), **data_stats}
    report["results"] = evaluate(model, conds, true_mean, seeds, args.latency_runs, thread_counts)
    report["recommendation"] = recommend(report["results"], report["eval"].get("data_cos_true_mean"))
    report["machine"] = machine_info()
    report["notes"] = {"history": HISTORY}
    report["wall_seconds"] = time.perf_counter() - start
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "prior_sampler_study.json").write_text(json.dumps(report, indent=1) + "\n")
    write_markdown(args.out_dir / "prior_sampler_study.md", report)
    log.info("recommendation: %s; wrote %s (%.0f s)", report["recommendation"]["choice"], args.out_dir, report["wall_seconds"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
