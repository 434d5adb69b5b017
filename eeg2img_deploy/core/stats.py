"""Latency percentiles, as every report of this toolkit gives them (bench and the client's load runs)."""

from __future__ import annotations

import numpy as np

from ..errors import OptionError


def latency_stats(samples_ms: list[float]) -> dict[str, float]:
    """p50/p90/p99 (linear interpolation, so p50 <= p90 <= p99 <= max), mean, min, max, n."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise OptionError("no samples: --runs must be >= 1")
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(a.mean()),
            "min": float(a.min()), "max": float(a.max()), "n": int(a.size)}
