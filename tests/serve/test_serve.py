"""``serve`` in a subprocess (PyTriton's tritonserver, CPU) against ``client`` and raw tritonclient requests.

One server per module on free 127.0.0.1 ports, always stopped (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("pytriton")
httpclient = pytest.importorskip("tritonclient.http")

SUBJECT = 8
PRIOR_STEPS = 10  # the load test's requests ask for fewer prior steps: faster, and an optional input at work


class ReadinessProbe(threading.Thread):
    """A load balancer's readiness probe, written by hand (urllib): GET /v2/health/ready every 10 ms from the
    moment the server process starts; at the first 200 it asks at once whether model eeg2img is ready and
    sends it a KServe v2 JSON request, as traffic would arrive once a probe passes."""

    def __init__(self, url: str, eeg: np.ndarray):
        super().__init__(daemon=True)
        self.url, self.eeg = url, eeg
        self.codes: list[tuple[float, int | None]] = []  # health/ready answers as they changed
        self.model_ready: int | None = None
        self.answer: dict | None = None
        self.error: str | None = None
        self.done = threading.Event()

    def _get(self, path: str) -> int | None:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://{self.url}{path}", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None

    def run(self) -> None:
        import urllib.request

        t0 = time.monotonic()
        while time.monotonic() - t0 < 300:
            code = self._get("/v2/health/ready")
            if not self.codes or self.codes[-1][1] != code:
                self.codes.append((round(time.monotonic() - t0, 3), code))
            if code == 200:
                self.model_ready = self._get("/v2/models/eeg2img/ready")
                body = {"inputs": [
                    {"name": "eeg", "shape": [1, *self.eeg.shape], "datatype": "FP32", "data": self.eeg.ravel().tolist()},
                    {"name": "subject_id", "shape": [1, 1], "datatype": "INT64", "data": [SUBJECT]},
                    {"name": "seed", "shape": [1, 1], "datatype": "INT64", "data": [3]},
                    {"name": "prior_steps", "shape": [1, 1], "datatype": "INT64", "data": [PRIOR_STEPS]}],
                    "outputs": [{"name": "image"}]}
                req = urllib.request.Request(f"http://{self.url}/v2/models/eeg2img/infer", json.dumps(body).encode(),
                                             {"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(req, timeout=120) as r:
                        self.answer = json.loads(r.read())
                except OSError as e:
                    self.error = f"{e}: {getattr(e, 'read', lambda: b'')()[:300]!r}"
                break
            time.sleep(0.01)
        self.done.set()


@pytest.fixture(scope="module")
def server(tiny_bundle, tiny_eeg, tmp_path_factory, triton_stub_loads):
    from eeg2img_deploy.serve.process import ServerProcess

    log = tmp_path_factory.mktemp("serve") / "serve.log"
    proc = ServerProcess(tiny_bundle, "--threads", "1", "--queue-delay-us", "20000", "-v", log_path=log)
    proc.probe = ReadinessProbe(proc.url, tiny_eeg[0])
    proc.probe.start()  # before the process: it sees every answer from the first
    try:
        proc.start()
    except Exception:
        print(log.read_text(errors="replace")[-5000:])
        raise
    yield proc
    proc.stop()


def test_health_ready_only_once_the_model_is_loaded(server, pipe, tiny_eeg):
    """Bug 3 (Triton's strict readiness): /v2/health/ready never answers 200 before model eeg2img is ready, and
    the first request sent when it does is answered with infer's image. Before, it answered 200 ~3 s early."""
    probe = server.probe
    assert probe.done.wait(120), probe.codes
    assert probe.codes[-1][1] == 200 and all(code != 200 for _, code in probe.codes[:-1]), probe.codes
    assert probe.model_ready == 200, (probe.codes, probe.model_ready)
    assert probe.error is None, probe.error
    out = {o["name"]: o for o in probe.answer["outputs"]}["image"]
    image = np.asarray(out["data"], dtype=np.uint8).reshape(out["shape"])
    expected = pipe(tiny_eeg[:1], SUBJECT, 3, prior_steps=PRIOR_STEPS).images
    np.testing.assert_array_equal(image, expected)


@pytest.fixture(scope="module")
def pipe(tiny_bundle):
    from eeg2img_deploy.runtime.pipeline import Pipeline

    p = Pipeline.from_bundle(tiny_bundle, threads=1)
    yield p
    p.close()


def _send(url, feeds, timeout=60):
    """A raw request: feeds by name, any dtype/shape (the client would fix those)."""
    with httpclient.InferenceServerClient(url, network_timeout=timeout) as c:
        inputs = []
        for name, arr in feeds.items():
            dtype = {"float32": "FP32", "float64": "FP64", "int64": "INT64"}[arr.dtype.name]
            t = httpclient.InferInput(name, list(arr.shape), dtype)
            t.set_data_from_numpy(arr)
            inputs.append(t)
        return c.infer("eeg2img", inputs)


def test_health_and_model_metadata(server):
    with httpclient.InferenceServerClient(server.url) as c:
        assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("eeg2img")
        meta = c.get_model_metadata("eeg2img")
        config = c.get_model_config("eeg2img")
    inputs = {t["name"]: (t["datatype"], t["shape"]) for t in meta["inputs"]}
    assert inputs["eeg"] == ("FP32", [-1, 63, 250]) and inputs["seed"] == ("INT64", [-1, 1])
    outputs = {t["name"]: (t["datatype"], t["shape"]) for t in meta["outputs"]}
    assert outputs["image"][0] == "UINT8" and outputs["image"][1][1:] == [128, 128, 3]
    assert config["max_batch_size"] == 4 and "dynamic_batching" in config


def test_client_writes_the_images_infer_writes(server, tiny_bundle, tiny_dir, tmp_path):
    from click.testing import CliRunner

    from eeg2img_deploy.cli import cli

    eeg_file = str(tiny_dir / "eeg" / "synthetic_eeg.npy")
    common = ["--eeg", eeg_file, "--subject", str(SUBJECT), "--seed", "3", "--trials", "0:3"]
    got = CliRunner().invoke(cli, ["client", "--url", server.url, "--out", str(tmp_path / "c"), *common])
    assert got.exit_code == 0, got.output
    want = CliRunner().invoke(cli, ["infer", "--bundle", str(tiny_bundle), "--out", str(tmp_path / "i"), *common])
    assert want.exit_code == 0, want.output
    for name in ("image_000.png", "image_001.png", "image_002.png", "grid.png"):
        assert (tmp_path / "c" / name).read_bytes() == (tmp_path / "i" / name).read_bytes(), name
    c, i = (json.loads((tmp_path / d / "result.json").read_text()) for d in ("c", "i"))
    np.testing.assert_array_equal(c["image_embeds"], i["image_embeds"])
    assert c["load"]["errors"] == 0 and c["load"]["requests"] == 3
    # three images and a grid, as infer says (the client counted the grid as a fourth image)
    assert f"wrote 3 image(s), a grid and result.json to {tmp_path / 'c'}" in got.output, got.output
    assert f"wrote 3 image(s), a grid and result.json to {tmp_path / 'i'}" in want.output, want.output
    assert i["precision"] == "fp32" and i["stage_precisions"]["unet"] == "fp32"  # was null


def test_eight_concurrent_clients_get_their_own_images(server, pipe, tiny_eeg, record_property):
    """8 clients x 20 requests, three seeds mixed: every answer equals the runtime's for its (trial, seed)."""
    from eeg2img_deploy.core.options import RunOptions
    from eeg2img_deploy.serve.client import Client

    seeds = (0, 1, 2)
    expected = {s: pipe(tiny_eeg, SUBJECT, s, prior_steps=PRIOR_STEPS).images for s in seeds}
    client = Client(server.url, timeout_s=60)
    answers, errors, lock = [], [], threading.Lock()

    def worker(w: int) -> None:
        for r in range(20):
            trial, seed = (w + r) % len(tiny_eeg), seeds[(w * 20 + r) % 3]
            try:
                a = client.infer(tiny_eeg[trial], SUBJECT, trial, RunOptions(seed=seed, prior_steps=PRIOR_STEPS))
            except Exception as e:  # collected: the assertion below names them
                with lock:
                    errors.append(repr(e))
                continue
            with lock:
                answers.append((trial, seed, a))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    wall = time.perf_counter() - t0
    assert not errors, errors[:3]
    assert len(answers) == 160
    wrong = [(t, s) for t, s, a in answers if not np.array_equal(a.image, expected[s][t])]
    assert not wrong, f"{len(wrong)} answers differ from the runtime's image for their (trial, seed): {wrong[:5]}"
    sizes = [a.batch_size for _, _, a in answers]
    assert max(sizes) > 1, "Triton never batched requests: the test did not exercise batching"
    lat = np.array([a.latency_ms for _, _, a in answers])
    stats = {"p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
             "throughput_rps": len(answers) / wall, "batch_sizes": np.bincount(sizes).tolist()}
    record_property("serve_load", stats)
    print("serve load, 8 clients x 20 requests:", stats)


@pytest.mark.parametrize(("feeds", "message"), [
    (lambda e: {"eeg": e[None, :, :200]}, "unexpected shape for input 'eeg'"),
    (lambda e: {"eeg": e[None].astype(np.float64)}, "FP64"),
    (lambda e: {"eeg": np.full((1, 63, 250), np.nan, np.float32)}, "non-finite values"),
    (lambda e: {"eeg": e[None], "subject_id": np.array([[42]], np.int64)}, "subject id(s) [42]"),
    (lambda e: {"eeg": e[None], "steps": np.array([[2]], np.int64)}, "'steps' must be one of"),
])
def test_bad_requests_get_an_error_and_the_server_keeps_serving(server, tiny_eeg, feeds, message):
    from tritonclient.utils import InferenceServerException

    from eeg2img_deploy.serve.client import server_message

    good = {"eeg": tiny_eeg[None, 0], "subject_id": np.array([[SUBJECT]], np.int64), "seed": np.array([[0]], np.int64),
            "prior_steps": np.array([[2]], np.int64)}
    with pytest.raises(InferenceServerException) as err:
        _send(server.url, {**good, **feeds(tiny_eeg[0])})
    text = server_message(err.value.message())
    assert message in text and "\n" not in text, text
    res = _send(server.url, good)
    assert res.as_numpy("image").shape == (1, 128, 128, 3)


def test_client_cli_names_the_server_error(server, tiny_dir, tmp_path):
    """The installed command line: one line naming the problem, exit code 2, nothing written."""
    proc = subprocess.run([sys.executable, "-m", "eeg2img_deploy.cli", "client", "--url", server.url, "--eeg",
                           str(tiny_dir / "eeg" / "synthetic_eeg.npy"), "--subject", "77", "--trials", "0",
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "subject id(s) [77]" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_a_rejected_request_is_one_info_line_in_the_log(server, tiny_eeg):
    """Before: PyTriton's WARNING with the whole traceback, wrapped at 80 columns, for every rejected request, and
    tritonserver's Python-backend stub's own E line (pb_stub.cc) holding it again, printed by PyTriton on stdout.
    Now a hand-written bad request is one INFO line of ours, and tritonserver's log comes through our logger at
    its levels (serve/triton_log.py). The log is a file, not a terminal: nothing wraps."""
    import urllib.error
    import urllib.request

    body = {"inputs": [
        {"name": "eeg", "shape": [1, *tiny_eeg[0].shape], "datatype": "FP32", "data": tiny_eeg[0].ravel().tolist()},
        {"name": "subject_id", "shape": [1, 1], "datatype": "INT64", "data": [4242]},
        {"name": "seed", "shape": [1, 1], "datatype": "INT64", "data": [0]}]}
    req = urllib.request.Request(f"http://{server.url}/v2/models/eeg2img/infer", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(req, timeout=60)
    deadline = time.monotonic() + 30
    while "[4242]" not in (text := server.log_path.read_text(errors="replace")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # tritonserver's own line, if any, comes after the answer
    text = server.log_path.read_text(errors="replace")
    about = [line for line in text.splitlines() if "[4242]" in line]
    assert len(about) == 1 and " INFO " in about[0] and " rejected: " in about[0], about
    assert "Exception while performing inference" not in text, text[-3000:]
    assert not [line for line in text.splitlines() if line.lstrip().startswith(("Traceback", 'File "'))], text[-3000:]
    assert "pb_stub.cc" not in text and "Failed to process the request(s)" not in text, text[-3000:]
    rejected = [line for line in text.splitlines() if " rejected: " in line]
    assert any("INFO" in line and "subject id(s) [42]" in line for line in rejected), text[-3000:]
    assert any("non-finite values" in line for line in rejected), text[-3000:]
    started = [line for line in text.splitlines() if "Started HTTPService" in line]
    assert len(started) == 1 and " INFO " in started[0] and "tritonserver http_server.cc" in started[0], started


def test_sigterm_drains_in_flight_requests(server, tiny_eeg):
    """Last in the module: stops the server. A request in flight when SIGTERM arrives still gets its answer."""
    result = {}

    def slow_request():
        feeds = {"eeg": np.repeat(tiny_eeg[None, 0], 4, axis=0), "subject_id": np.full((4, 1), SUBJECT, np.int64),
                 "seed": np.zeros((4, 1), np.int64), "steps": np.full((4, 1), 4, np.int64)}
        try:
            result["image"] = _send(server.url, feeds).as_numpy("image")
        except Exception as e:  # recorded for the assertion
            result["error"] = repr(e)

    t = threading.Thread(target=slow_request)
    t.start()
    time.sleep(0.3)
    server.terminate()
    t.join(timeout=60)
    assert result.get("image") is not None and result["image"].shape[0] == 4, result
    assert server.proc.wait(60) == 0
    assert not server.ready()


def test_client_without_a_server_says_so(tiny_dir, tmp_path):
    from eeg2img_deploy.serve.process import free_ports

    (port,) = free_ports(1)
    proc = subprocess.run([sys.executable, "-m", "eeg2img_deploy.cli", "client", "--url", f"127.0.0.1:{port}", "--eeg",
                           str(tiny_dir / "eeg" / "synthetic_eeg.npy"), "--subject", "8", "--wait", "1",
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "cannot reach a Triton server" in proc.stderr and "--url" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()
