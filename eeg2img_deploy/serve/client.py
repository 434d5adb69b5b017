"""``client``: send EEG trials to a served ``eeg2img`` model (tritonclient, HTTP) and collect the images.

Trial i of the file goes out as one request with ``sample_index = i``, so image i is the one ``infer``
writes for the same file, subject and seed. With ``requests > trials`` and ``concurrency > 1`` it is a
load generator: trials are sent round-robin from ``concurrency`` threads, every repeated answer is
checked against the first one for its trial, and latency percentiles and throughput are reported.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.options import RunOptions
from ..eeg.spec import EEGSpec, encoder_spec
from ..errors import BackendUnavailableError, ServingError
from .requests import MODEL_NAME, TIMING_KEYS


@dataclass
class Answer:
    trial: int
    image: np.ndarray
    image_embeds: np.ndarray
    eeg_embeds: np.ndarray
    timings_ms: dict[str, float]
    batch_size: int
    latency_ms: float


@dataclass
class LoadReport:
    requests: int
    concurrency: int
    wall_s: float
    latencies_ms: list[float]
    batch_sizes: list[int]
    errors: list[str] = field(default_factory=list)
    mismatches: list[int] = field(default_factory=list)  # trials whose repeated answers differed

    def summary(self) -> dict:
        from ..core.stats import latency_stats

        sizes, counts = np.unique(np.asarray(self.batch_sizes, np.int64), return_counts=True)
        ok = self.requests - len(self.errors)
        return {
            "requests": self.requests, "concurrency": self.concurrency, "errors": len(self.errors),
            "mismatches": len(self.mismatches), "wall_s": round(self.wall_s, 4),
            "throughput_rps": round(ok / self.wall_s, 3) if self.wall_s else 0.0,
            "latency_ms": {k: round(v, 3) for k, v in latency_stats(self.latencies_ms or [0.0]).items()},
            "server_batch_sizes": {str(int(s)): int(c) for s, c in zip(sizes, counts)},
            "first_errors": self.errors[:3],
        }


def _tritonclient_http():
    try:
        import tritonclient.http as httpclient
    except ImportError as e:
        raise BackendUnavailableError(f"client needs tritonclient ({e}): pip install 'eeg2img-deploy[serve]'") from None
    return httpclient


def parse_url(url: str) -> str:
    """``host:port`` of a Triton HTTP endpoint (an ``http://`` prefix allowed); OptionError naming --url otherwise.

    Checked before any connection: tritonclient takes ``localhost:abc`` and fails later, once per retry.
    """
    from urllib.parse import urlsplit

    from ..errors import OptionError

    rest = url.split("://", 1)[1] if url.startswith(("http://", "https://")) else url
    example = "give host:port, e.g. --url localhost:8000 (serve's --http-port)"
    try:
        parts = urlsplit(f"//{rest}")
        port = parts.port
    except ValueError:  # a port that is not a number in 0..65535
        raise OptionError(f"--url {url!r}: the port is not a number in 1..65535; {example}") from None
    if "://" in rest or not parts.hostname or parts.path.strip("/") or parts.query or parts.fragment:
        raise OptionError(f"--url {url!r} is not host:port; {example}")
    if not port:
        raise OptionError(f"--url {url!r} has no port; {example}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}"


class Client:
    """One HTTP connection per thread to ``url``, for model ``model``."""

    def __init__(self, url: str, model: str = MODEL_NAME, timeout_s: float = 120.0):
        self.url = parse_url(url)
        self.httpclient = _tritonclient_http()
        self.model = model
        self.timeout_s = timeout_s
        self._local = threading.local()

    def _conn(self):
        if not hasattr(self._local, "conn"):
            self._local.conn = self.httpclient.InferenceServerClient(
                self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s)
        return self._local.conn

    def check_ready(self, wait_s: float = 0.0, on_wait=None) -> None:
        """Raise unless the server and the model are ready, polling for up to ``wait_s`` (a server just started).

        ``on_wait(message)`` is called once, when the first look finds it not ready and there is time to wait.
        """
        deadline = time.monotonic() + wait_s
        while True:
            try:
                problem = None if self._conn().is_model_ready(self.model) else "not-ready"
            except Exception as e:  # connection refused, DNS, timeout: tritonclient raises several types
                problem = str(e)
            if problem is None:
                return
            if time.monotonic() >= deadline:
                break
            if on_wait is not None:
                why = f"model {self.model!r} not ready" if problem == "not-ready" else "no answer"
                on_wait(f"waiting up to {wait_s:g} s for the Triton server at {self.url} ({why}; --wait sets how long)")
                on_wait = None
            time.sleep(0.5)
        if problem == "not-ready":
            raise ServingError(f"the server at {self.url} is up but model {self.model!r} is not ready: check its log "
                               "(or wait longer: --wait)")
        raise ServingError(f"cannot reach a Triton server at {self.url} ({problem}): start `eeg2img-deploy serve "
                           "--bundle B` there or pass the right --url")

    def eeg_shape(self) -> tuple[int, int]:
        """(C, T) of the served model's ``eeg`` input, from its metadata: the channels and samples its encoder reads."""
        try:
            meta = self._conn().get_model_metadata(self.model)
        except Exception as e:  # tritonclient raises several types
            raise ServingError(f"cannot read model {self.model!r}'s metadata from {self.url}: {server_message(str(e))}") from None
        for t in meta.get("inputs", []):
            if t.get("name") == "eeg" and len(t.get("shape", [])) >= 2:
                return int(t["shape"][-2]), int(t["shape"][-1])
        raise ServingError(f"model {self.model!r} at {self.url} has no 'eeg' input: is it an eeg2img-deploy model (--model)?")

    def infer(self, eeg: np.ndarray, subject: int, trial: int, opts: RunOptions) -> Answer:
        """One trial (C, T) as one request with ``opts``' seed, and its steps, prior_steps and ip_scale where given
        (the served model's optional per-request inputs; left out, the server runs its bundle's values); raises
        :class:`ServingError` with the server's message."""
        http = self.httpclient
        feeds: dict[str, np.ndarray] = {"eeg": np.asarray(eeg, np.float32)[None], "subject_id": np.array([[subject]], np.int64),
                 "seed": np.array([[opts.seed]], np.int64), "sample_index": np.array([[trial]], np.int64)}
        for name, dtype in (("steps", np.int64), ("prior_steps", np.int64), ("ip_scale", np.float32)):
            value = getattr(opts, name)  # None unless given: RunOptions leaves these to the bundle (and a fused
            if value is not None:  # ensemble takes no prior_steps input at all)
                feeds[name] = np.array([[value]], dtype)
        inputs = []
        for name, arr in feeds.items():
            t = http.InferInput(name, list(arr.shape), _triton_dtype(arr.dtype))
            t.set_data_from_numpy(arr, binary_data=True)
            inputs.append(t)
        t0 = time.perf_counter()
        try:
            res = self._conn().infer(self.model, inputs)
        except Exception as e:  # InferenceServerException carries the server's message
            msg = e.message() if hasattr(e, "message") and callable(e.message) else str(e)
            raise ServingError(f"trial {trial}: the server rejected the request: {server_message(msg)}") from None
        latency = (time.perf_counter() - t0) * 1e3
        timings, batch = res.as_numpy("timings_ms"), res.as_numpy("batch_size")  # another model may lack them
        return Answer(trial, res.as_numpy("image")[0], res.as_numpy("image_embeds")[0], res.as_numpy("eeg_embeds")[0],
                      {} if timings is None else dict(zip(TIMING_KEYS, map(float, timings[0]))),
                      0 if batch is None else int(batch[0, 0]), latency)


def served_spec(server_shape: tuple[int, int], channels: Path | None, model: str) -> EEGSpec:
    """The trials to read for a served model: ``--encoder-channels`` (its bundle's channel list) or the paper's 63 x 250,
    refused when its shape is not the ``eeg`` input's (the trials would only be rejected request by request)."""
    spec = encoder_spec(channels)
    if spec.shape == tuple(server_shape):
        return spec
    served = f"model {model!r} reads {server_shape[0]} channels x {server_shape[1]} samples"
    if channels is not None:
        raise ServingError(f"--encoder-channels {channels.name} describes {spec.n_channels} x {spec.n_times} trials but the "
                           f"served {served}: pass the channel list its bundle was exported with")
    raise ServingError(f"the served {served}, not the paper's 63 x 250: pass its channel list with --encoder-channels FILE "
                       "(the one its bundle was exported with)")


def server_message(text: str) -> str:
    """The one line that says what was wrong (``serve`` answers a rejected batch with a traceback)."""
    found = re.findall(r"RequestRejected: (.*)", text or "")
    if found:
        return found[-1].strip()
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else "no message"


def _triton_dtype(dtype: np.dtype) -> str:
    return {"float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32", "uint8": "UINT8"}[np.dtype(dtype).name]


def run_trials(client: Client, eeg: np.ndarray, subject: int, opts: RunOptions, *, concurrency: int = 1,
               requests: int | None = None, progress=None) -> tuple[list[Answer], LoadReport]:
    """Send ``requests`` (default: one per trial) round-robin over the trials from ``concurrency`` threads.

    Returns the first answer of each trial and the load report. Errors are collected, not raised, so a
    load run reports them all; the caller decides.
    """
    n = len(eeg)
    total = n if requests is None else requests
    first: dict[int, Answer] = {}
    lock = threading.Lock()
    report = LoadReport(total, concurrency, 0.0, [], [])

    def one(k: int) -> None:
        trial = k % n
        try:
            ans = client.infer(eeg[trial], subject, trial, opts)
        except ServingError as e:
            with lock:
                report.errors.append(str(e))
            return
        with lock:
            report.latencies_ms.append(ans.latency_ms)
            report.batch_sizes.append(ans.batch_size)
            seen = first.setdefault(trial, ans)
            if seen is not ans and not np.array_equal(seen.image, ans.image):
                report.mismatches.append(trial)
        if progress:
            progress()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(total)))
    report.wall_s = time.perf_counter() - t0
    return [first[i] for i in sorted(first)], report
