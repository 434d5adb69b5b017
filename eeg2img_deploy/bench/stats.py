"""Latency statistics and the timing loop of ``bench``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from ..core.stats import latency_stats

STAGES = ("encoder", "prior", "unet", "decoder")  # timed stages of both pipelines, besides "total"
LOW_LEVEL_STAGES = ("encoder", "prior", "low_level", "unet", "decoder")  # with the low-level path's start latents


def report_stages(settings: dict) -> tuple[str, ...]:
    """The timed stages of a run (a report's settings: ``RunOptions.record()``): the low-level path adds one,
    captions and prompts one each (after the prior)."""
    stages = LOW_LEVEL_STAGES if settings.get("low_level") else STAGES
    caption = settings.get("caption") or settings.get("prompt_from_caption")
    text = settings.get("prompt") is not None or settings.get("prompt_from_caption")
    extra = (("caption",) if caption else ()) + (("text_encoder",) if text else ())
    return (*stages[:2], *extra, *stages[2:])


def stats_table(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {k: latency_stats(v) for k, v in samples.items()}


def progress_bar(enabled: bool):
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.progress import Progress

    return Progress(transient=True)


def time_calls(call: Callable[[], tuple[dict[str, float], dict[str, float]]], runs: int, warmup: int,
               keys: tuple[str, ...], progress, label: str) -> dict[str, list[float]]:
    """``call()`` returns (timings_ms, extra); collects ``keys`` of timings_ms and every key of extra per run."""
    task = progress.add_task(label, total=warmup + runs) if progress else None
    samples: dict[str, list[float]] = {}
    for i in range(warmup + runs):
        timings, extra = call()
        if i >= warmup:
            for k, v in {**{k: timings[k] for k in keys}, **extra}.items():
                samples.setdefault(k, []).append(float(v))
        if progress:
            progress.advance(task)
    return samples
