"""The prior both ways in one run: the fused ``prior_sampler`` graph against the stepwise numpy sampler.

Used by :func:`eeg2img_deploy.bench.harness.run_bench` when the bundle has a fused graph for the benchmarked step
count. The two are timed alternately, call by call, on the same embeddings, seed and noise, so load on
the machine falls on both alike, and the report says how far apart their outputs are.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..core.options import RunOptions

GRAPHS = ("fused", "stepwise")


def compare_prior_graphs(pipe, eeg_embeds: np.ndarray, run: RunOptions, *, runs: int,
                         warmup: int) -> dict[str, Any] | None:
    """Latency of ``pipe.prior`` fused and stepwise (DDPM, ``run``'s steps, guidance and seed: options resolved
    against the bundle); None where the bundle has no fused graph for that step count."""
    from .stats import latency_stats

    steps, guidance = run.resolved().prior_steps, run.resolved().guidance
    if steps not in pipe.fused_prior_steps:
        return None
    samples: dict[str, list[float]] = {g: [] for g in GRAPHS}
    out: dict[str, np.ndarray] = {}
    for i in range(warmup + runs):
        for graph in GRAPHS if i % 2 == 0 else GRAPHS[::-1]:  # alternate which goes first
            t0 = time.perf_counter()
            out[graph] = pipe.prior(eeg_embeds, run.seed, 0, steps=steps, guidance=guidance, sampler="ddpm",
                                    graph=graph)
            if i >= warmup:
                samples[graph].append((time.perf_counter() - t0) * 1e3)
    stats = {g: latency_stats(samples[g]) for g in GRAPHS}
    return {
        "steps": steps,
        "batch": len(eeg_embeds),
        "latency_ms": stats,
        "samples_ms": samples,
        "stepwise_over_fused": stats["stepwise"]["p50"] / stats["fused"]["p50"],
        "image_embeds_max_abs_diff": float(np.abs(out["fused"] - out["stepwise"]).max()),
    }


def describe(result: dict[str, Any] | None) -> str:
    """One line for the bench summary."""
    if result is None:
        return "prior graphs: the bundle has no fused prior graph for this step count (stepwise only)"
    lat = result["latency_ms"]
    return (f"prior graphs ({result['steps']} DDPM steps, batch {result['batch']}): fused p50 {lat['fused']['p50']:.1f} ms, "
            f"stepwise {lat['stepwise']['p50']:.1f} ms, stepwise / fused {result['stepwise_over_fused']:.2f}x, "
            f"image_embeds max |diff| {result['image_embeds_max_abs_diff']:.1e}")
