"""``serve``: the runtime behind Triton Inference Server's core through PyTriton (``pip install 'eeg2img-deploy[serve]'``).

PyTriton starts the ``tritonserver`` it bundles and a Python stub per model instance that forwards the
requests Triton's dynamic batcher gathered to :func:`~.requests.run_requests`, which calls the runtime's
:class:`~eeg2img_deploy.runtime.pipeline.Pipeline` (one per instance).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..core.options import RunOptions
from ..errors import BackendUnavailableError
from .requests import MODEL_NAME, model_inputs, model_outputs, run_requests
from .triton_log import TritonLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int | None = None  # default: the bundle's max_batch
    queue_delay_us: int = 2000  # how long the dynamic batcher waits to fill a batch
    instances: int = 1  # model instances (each its own Pipeline), run concurrently
    drain_timeout_s: int = 30  # on Ctrl-C/SIGTERM, how long in-flight requests may finish


def interpreter_libpython() -> Path | None:
    """The folder holding this interpreter's own ``libpython3.X.so``, or None for a statically linked one.

    PyTriton's Python stub links ``libpython3.X.so.1.0`` by name. Where another Python of the same minor
    version is installed system-wide (Debian's next to pyenv's, conda's), the loader picks that one, and
    model load fails with ``'_thread.RLock' object has no attribute '_recursion_count'`` (a patch-level
    mismatch). Putting this folder first on ``LD_LIBRARY_PATH`` makes the stub load the right one.
    """
    name, libdir = sysconfig.get_config_var("INSTSONAME"), sysconfig.get_config_var("LIBDIR")
    if not name or not libdir or not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return None
    folder = Path(libdir)
    return folder if (folder / name).exists() else None


def prefer_interpreter_libpython(env: dict[str, str] | os._Environ = os.environ) -> None:
    """Put :func:`interpreter_libpython` first on ``LD_LIBRARY_PATH`` (PyTriton copies the environment)."""
    folder = interpreter_libpython()
    if folder is None:
        log.warning("this Python has no shared libpython: PyTriton's stub will load whichever libpython the "
                    "system has, which fails unless it is the same patch version")
        return
    parts = [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p and p != str(folder)]
    env["LD_LIBRARY_PATH"] = ":".join([str(folder), *parts])


def missing_stub_libraries(env: dict[str, str] | None = None) -> list[str]:
    """Libraries PyTriton's Python stub cannot find (``ldd``), with ``env``'s ``LD_LIBRARY_PATH``; [] when it loads.

    A Python built without a shared libpython (Debian's ``python3`` is one) needs the ``libpython3.X``
    package beside it: the stub embeds the interpreter through that library.
    """
    import shutil
    import subprocess
    import sys

    from pytriton.utils.distribution import get_libs_path, get_stub_path

    ldd = shutil.which("ldd")
    stub = get_stub_path(f"{sys.version_info.major}.{sys.version_info.minor}")
    if ldd is None or not stub.is_file():
        return [] if ldd is None else [str(stub)]
    env = dict(os.environ if env is None else env)
    env["LD_LIBRARY_PATH"] = ":".join(p for p in (env.get("LD_LIBRARY_PATH"), str(get_libs_path())) if p)
    out = subprocess.run([ldd, str(stub)], env=env, capture_output=True, text=True, timeout=30).stdout
    return [line.split("=>")[0].strip() for line in out.splitlines() if "not found" in line]


PORT_OPTIONS = {"http_port": "--http-port", "grpc_port": "--grpc-port", "metrics_port": "--metrics-port"}


def check_ports(settings: ServeSettings) -> None:
    """Refuse ports that Triton could not bind, before it starts (it would retry for minutes, then fail, or
    answer another server's token check when another serve holds the port)."""
    import errno
    import socket

    from ..errors import OptionError

    ports = {opt: getattr(settings, name) for name, opt in PORT_OPTIONS.items()}
    fix = "choose free ones with --http-port/--grpc-port/--metrics-port"
    for opt, port in ports.items():
        if not 1 <= port <= 65535:
            raise OptionError(f"{opt} {port} is not a port (1..65535): {fix}")
        same = [o for o, p in ports.items() if p == port and o != opt]
        if same:
            raise OptionError(f"{opt} and {same[0]} are both {port}: {fix}")
        try:
            family, kind, proto, _, address = socket.getaddrinfo(settings.host, port, type=socket.SOCK_STREAM)[0]
        except OSError as e:
            raise OptionError(f"--host {settings.host} is not an address of this machine ({e})") from None
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is free
            try:
                probe.bind(address)
            except OSError as e:
                if e.errno == errno.EADDRNOTAVAIL:  # the address, not the port
                    raise OptionError(f"--host {settings.host} is not an address of this machine ({e.strerror}): "
                                      "give one of its addresses, 127.0.0.1, or 0.0.0.0 for every interface") from None
                raise OptionError(f"{opt} {port}: {settings.host}:{port} cannot be bound ({e.strerror}; another "
                                  f"serve or program listens there?): {fix}") from None


def _pytriton():
    try:
        import pytriton.triton  # noqa: F401
    except ImportError as e:
        raise BackendUnavailableError(f"serve needs PyTriton ({e}): pip install 'eeg2img-deploy[serve]'") from None


class RequestRejected(ValueError):
    """A bad request; PyTriton puts the traceback in the answer, the client keeps the line after this name."""


class _RejectionsAsInfo(logging.Filter):
    """PyTriton logs every exception of the infer function at WARNING with its traceback. A rejected request
    is the client's mistake, answered with its reason: one INFO line of ours instead (-v shows it); any other
    exception passes as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        from .client import server_message

        text = " ".join(map(str, record.args)) if isinstance(record.args, tuple) else str(record.msg)
        if "RequestRejected: " not in text:
            return True
        log.info("rejected: %s", server_message(text))
        return False


PYTRITON_INFERENCE_LOGGER = "pytriton.proxy.inference"


def _infer_function(pipe, run: RunOptions):
    """A PyTriton callable over one pipeline: a list of requests in, a list of output dicts out."""

    def infer(requests):
        results = run_requests(pipe, [dict(r.items()) for r in requests], run)
        errors = [(i, e) for i, e in enumerate(results) if isinstance(e, Exception)]
        if errors:  # PyTriton answers a batch with one error: name the request(s) it is about
            raise RequestRejected("; ".join(f"request {i + 1} of {len(results)} in this batch: {e}" for i, e in errors))
        return results

    return infer


def serve(bundle: Path, settings: ServeSettings, *, open_pipeline, run: RunOptions = RunOptions(),
          on_ready=None) -> None:
    """Serve ``bundle`` until Ctrl-C or SIGTERM; in-flight requests finish first (up to ``drain_timeout_s``).

    ``open_pipeline()`` returns a new :class:`Pipeline`; one is opened per instance.
    """
    check_ports(settings)
    _pytriton()
    import numpy as np
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonLifecyclePolicy

    pipes = [open_pipeline() for _ in range(settings.instances)]
    max_batch = settings.max_batch or pipes[0].max_batch
    prefer_interpreter_libpython()
    missing = missing_stub_libraries()
    if missing:
        v = f"{sys.version_info.major}.{sys.version_info.minor}"
        raise BackendUnavailableError(
            f"PyTriton's Python stub cannot load {missing}: this Python has no shared libpython; install it "
            f"(Debian/Ubuntu: apt-get install libpython{v}) or use a Python built with --enable-shared")
    logs = tempfile.TemporaryDirectory(prefix="eeg2img-serve-")
    triton_log = TritonLog(Path(logs.name), RequestRejected.__name__)  # tritonserver's log, through ours
    config = TritonConfig(
        http_address=settings.host, http_port=settings.http_port, grpc_address=settings.host,
        grpc_port=settings.grpc_port, metrics_address=settings.host, metrics_port=settings.metrics_port,
        exit_timeout_secs=settings.drain_timeout_s, log_file=triton_log.path,
    )

    def tensors(ports):
        return [Tensor(name=p.name, dtype=np.dtype(p.dtype).type, shape=p.dims, optional=p.optional) for p in ports]

    # Strict readiness: PyTriton's default starts tritonserver first and loads the model over HTTP later, so
    # /v2/health/ready answered 200 (no model, nothing to wait for) for seconds before `eeg2img` could run.
    # Its local model store instead writes the model before tritonserver starts, which loads it at startup
    # and only then opens its endpoints: ready means the model is ready.
    policy = TritonLifecyclePolicy(launch_triton_on_startup=False, local_model_store=True)
    # SIGTERM (docker stop, kubectl) drains like Ctrl-C: PyTriton stops Triton, which finishes in-flight requests
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    rejections = _RejectionsAsInfo()
    logging.getLogger(PYTRITON_INFERENCE_LOGGER).addFilter(rejections)
    try:
        triton_log.start()
        with Triton(config=config, triton_lifecycle_policy=policy) as triton:
            triton.bind(
                model_name=MODEL_NAME,
                infer_func=[_infer_function(p, run) for p in pipes],
                inputs=tensors(model_inputs(pipes[0].eeg_spec.shape)),
                outputs=tensors(model_outputs(pipes[0].image_size)),
                config=ModelConfig(max_batch_size=max_batch, batcher=DynamicBatcher(
                    max_queue_delay_microseconds=settings.queue_delay_us)),
                strict=True,
            )
            triton.run()
            log.info("serving %s as model %r: http %s:%d, grpc %s:%d, metrics :%d", bundle, MODEL_NAME, settings.host,
                     settings.http_port, settings.host, settings.grpc_port, settings.metrics_port)
            if on_ready:
                on_ready()
            triton.serve()
    finally:
        if triton_log.is_alive():
            triton_log.close()
        logs.cleanup()
        logging.getLogger(PYTRITON_INFERENCE_LOGGER).removeFilter(rejections)
        signal.signal(signal.SIGTERM, previous)
        for p in pipes:
            p.close()
