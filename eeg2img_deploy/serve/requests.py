"""The served model ``eeg2img``: its inputs and outputs, and how a batch of requests becomes pipeline calls.

numpy only, shared by ``serve`` (PyTriton) and the Python-backend model of ``triton-repo``. Every row
(one trial) carries its own subject, seed and sample index, so its noise is the runtime's
``(seed, sample index)`` stream whatever else Triton batched it with: a request answers exactly what
``infer --seed S`` gives for the same trials (row j of a request is sample j unless ``sample_index``
says otherwise; the client sends trial i of a file with ``sample_index = i``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..eeg.spec import validate_eeg, validate_subject_ids
from ..core.options import RUN_FIELDS, RunOptions
from ..errors import EEGInputError, Eeg2ImgError, OptionError
from ..manifest import AxisRange
from ..runtime.pipeline import Pipeline
from ..runtime.trt_backend import BATCH_AXES

MODEL_NAME = "eeg2img"
TIMING_KEYS = ("encoder", "prior", "unet", "decoder", "total")


@dataclass(frozen=True)
class Port:
    """One input or output of the served model; ``dims`` exclude the batch axis."""

    name: str
    dtype: str  # numpy dtype name
    dims: tuple[int, ...]
    optional: bool = False


def model_inputs(eeg_shape: tuple[int, int]) -> tuple[Port, ...]:
    return (
        Port("eeg", "float32", tuple(eeg_shape)),
        Port("subject_id", "int64", (1,)),
        Port("seed", "int64", (1,)),
        Port("sample_index", "int64", (1,), optional=True),  # default: the row's position in its request
        Port("steps", "int64", (1,), optional=True),  # default: RunOptions' (the server's)
        Port("prior_steps", "int64", (1,), optional=True),  # default: RunOptions'
        Port("ip_scale", "float32", (1,), optional=True),  # default: the bundle's
    )


def model_outputs(image_size: int) -> tuple[Port, ...]:
    side = image_size
    return (
        Port("image", "uint8", (side, side, 3)),
        Port("image_embeds", "float32", (1024,)),
        Port("eeg_embeds", "float32", (1024,)),
        Port("timings_ms", "float32", (len(TIMING_KEYS),)),  # of the pipeline call that ran this row
        Port("batch_size", "int64", (1,)),  # trials run together in that call (dynamic batching at work)
    )


@dataclass
class _Rows:
    """The rows of one request that share options; ``rows`` are their positions in the request."""

    rows: np.ndarray
    eeg: np.ndarray
    ids: np.ndarray
    seeds: np.ndarray
    indices: np.ndarray
    options: RunOptions  # rows with equal options run as one pipeline call


def _column(request: dict[str, np.ndarray], name: str, n: int, dtype: str, default=None) -> np.ndarray:
    if request.get(name) is None:
        if default is None:
            raise EEGInputError(f"request has no input {name!r}")
        return np.asarray(default, dtype=dtype).reshape(-1)[:n] if np.ndim(default) else np.full(n, default, dtype)
    arr = np.asarray(request[name])
    if arr.dtype != np.dtype(dtype):
        raise EEGInputError(f"input {name!r} has dtype {arr.dtype}; expected {dtype}")
    flat = arr.reshape(len(arr), -1) if arr.ndim else arr.reshape(1, 1)
    if flat.shape != (n, 1):
        raise EEGInputError(f"input {name!r} has shape {arr.shape}; expected ({n}, 1): one value per EEG trial")
    return flat[:, 0]


def parse_request(pipe: Pipeline, request: dict[str, np.ndarray], run: RunOptions = RunOptions()) -> list[_Rows]:
    """Validate one request (the runtime's own EEG and subject checks) and split it by options (``run``, the
    server's, with each row's steps, prior_steps and ip_scale)."""
    run = pipe.options(run)  # the bundle's values where the server leaves them unset (its recommended steps)
    if request.get("eeg") is None:
        raise EEGInputError("request has no input 'eeg'")
    eeg = validate_eeg(request["eeg"], pipe.eeg_spec)
    n = len(eeg)
    ids = validate_subject_ids(_column(request, "subject_id", n, "int64"), n)
    pipe.check_subjects(ids, run.shared_subject_token)
    seeds = _column(request, "seed", n, "int64")
    indices = _column(request, "sample_index", n, "int64", default=np.arange(n))
    if (seeds < 0).any() or (indices < 0).any():
        raise OptionError("inputs 'seed' and 'sample_index' must be >= 0")
    steps = _column(request, "steps", n, "int64", default=run.steps)
    prior_steps = _column(request, "prior_steps", n, "int64", default=run.prior_steps)
    scales = _column(request, "ip_scale", n, "float32", default=np.nan if run.ip_scale is None else run.ip_scale)
    allowed = list(pipe.manifest.bundle.steps)
    if not set(steps.tolist()) <= set(allowed):
        raise OptionError(f"input 'steps' must be one of {allowed} (this bundle's scheduler tables); "
                            f"got {sorted(set(steps.tolist()))}")
    groups: dict[RunOptions, list[int]] = {}
    for j in range(n):
        row = {"steps": int(steps[j]), "prior_steps": int(prior_steps[j]),
               "ip_scale": None if np.isnan(scales[j]) else float(scales[j])}
        for name, value in row.items():  # RunOptions' own ranges, named as the request's inputs
            if value is not None and (problem := RUN_FIELDS[name].metadata["rule"].problem(value)) is not None:
                raise OptionError(f"input {name!r}: {problem}")
        groups.setdefault(run.replace(**row), []).append(j)
    return [_Rows(r, eeg[r], ids[r], seeds[r], indices[r], opt) for opt, r in ((o, np.array(r)) for o, r in groups.items())]


def run_requests(pipe: Pipeline, requests: list[dict[str, np.ndarray]],
                 run: RunOptions = RunOptions()) -> list[dict[str, np.ndarray] | Eeg2ImgError]:
    """One result per request: its outputs by name, or the error that rejected it (the others still run).

    Rows with the same options run as one pipeline call across requests (the pipeline chunks them by the
    engines' batch profile).
    """
    parsed: list[list[_Rows] | Eeg2ImgError] = []
    for req in requests:
        try:
            parsed.append(parse_request(pipe, req, run))
        except (EEGInputError, OptionError) as e:  # the request's EEG, or its run options
            parsed.append(e)
    results: list[dict[str, np.ndarray] | Eeg2ImgError] = []
    for rows in parsed:
        n = 0 if isinstance(rows, Exception) else sum(len(p.rows) for p in rows)
        results.append(rows if isinstance(rows, Exception) else _empty_outputs(pipe, n))
    by_option: dict[RunOptions, list[tuple[int, _Rows]]] = {}
    for r, rows in enumerate(parsed):
        for part in [] if isinstance(rows, Exception) else rows:
            by_option.setdefault(part.options, []).append((r, part))
    for opt, parts in by_option.items():
        eeg, ids, seeds, indices = (np.concatenate([getattr(p, k) for _, p in parts])
                                    for k in ("eeg", "ids", "seeds", "indices"))
        res = pipe(eeg, ids, seeds, opt, sample_indices=indices)
        timings = np.array([res.timings_ms[k] for k in TIMING_KEYS], np.float32)
        start = 0
        for r, p in parts:
            sl = slice(start, start + len(p.rows))
            start = sl.stop
            out = results[r]
            assert isinstance(out, dict)  # a request with rows parsed
            out["image"][p.rows] = res.images[sl]
            out["image_embeds"][p.rows] = res.image_embeds[sl]
            out["eeg_embeds"][p.rows] = res.eeg_embeds[sl]
            out["timings_ms"][p.rows] = timings
            out["batch_size"][p.rows] = len(eeg)
    return results


def _empty_outputs(pipe: Pipeline, n: int) -> dict[str, np.ndarray]:
    return {o.name: np.zeros((n, *o.dims), o.dtype) for o in model_outputs(pipe.image_size)}


def pad_to_static(feeds: dict[str, np.ndarray], specs: tuple, axes: dict[str, AxisRange]) -> tuple[dict, int, int]:
    """Pad each input along its own batch axis (the spec's ``batch``/``batch2`` axis, wherever it is: the caption's
    KV cache carries it second) to its static size in ``axes`` (a static engine's: min = max), repeating the last
    row; return the feeds and the (real, padded) size of the first padded axis (``batch2`` axes scale alike)."""
    out, rows = dict(feeds), None
    for t in specs:
        axis = _batch_axis(t)
        if axis is None:
            continue
        value, size = feeds[t.name], axes[str(t.shape[axis])].max
        n = value.shape[axis]
        if n < size:
            pad = np.repeat(np.take(value, [n - 1], axis=axis), size - n, axis=axis)
            out[t.name] = np.concatenate([value, pad], axis=axis)
            rows = rows or (n, size)
    real, padded = rows or (1, 1)
    return out, real, padded


def cut_padding(outputs: dict[str, np.ndarray], specs: tuple, real: int, padded: int) -> dict[str, np.ndarray]:
    """The outputs of a padded call without the padding rows, along each output's own batch axis."""
    out = dict(outputs)
    for t in specs:
        axis = _batch_axis(t)
        if axis is not None and real != padded:
            v = outputs[t.name]
            out[t.name] = np.take(v, range(v.shape[axis] * real // padded), axis=axis)
    return out


def _batch_axis(spec) -> int | None:
    return next((i for i, d in enumerate(spec.shape) if d in BATCH_AXES), None)
