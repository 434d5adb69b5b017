"""Servers in child processes on free local ports, for tests, benchmarks and notebooks: ``serve``, and a
``triton-repo`` repository on PyTriton's bundled ``tritonserver``.

Always stopped on exit (SIGTERM, which drains in-flight requests, then SIGKILL after a deadline).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ..errors import ServingError


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class ServerProcess:
    """``eeg2img-deploy serve --bundle B`` on 127.0.0.1 with free ports; ``url`` is its HTTP endpoint."""

    ready_path = "/v2/health/ready"  # serve's readiness: the model is loaded (the probe the README names)

    def __init__(self, bundle: Path, *args: str, log_path: Path | None = None, start_timeout_s: float = 120.0,
                 stop_timeout_s: float = 60.0):
        self.bundle = Path(bundle)
        self.args = args
        self.env: dict[str, str] | None = None
        self.log_path = log_path
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.proc: subprocess.Popen | None = None
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        self.url = f"127.0.0.1:{self.http_port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "eeg2img_deploy.cli", "serve", "--bundle", str(self.bundle), "--host", "127.0.0.1",
                "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
                "--metrics-port", str(self.metrics_port), *self.args]

    def start(self) -> ServerProcess:
        self._log = open(self.log_path or os.devnull, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise ServingError(f"serve exited with code {self.proc.returncode} before it was ready"
                                   + (f"; see {self.log_path}" if self.log_path else ""))
            if self.ready():
                return self
            time.sleep(0.25)
        self.stop()
        raise ServingError(f"serve was not ready after {self.start_timeout_s:.0f} s")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.url}{self.ready_path}", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def terminate(self) -> None:
        """SIGTERM: the server drains in-flight requests, then exits."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        self.terminate()
        try:
            self.proc.wait(self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class BundledTritonProcess(ServerProcess):
    """``tritonserver --model-repository REPO`` with the binary PyTriton bundles (Python backend only, CPU).

    Prepared as PyTriton prepares it: the Python backend with this interpreter's stub in a backend folder
    under ``workdir``, the bundled libraries and this interpreter's libpython on ``LD_LIBRARY_PATH``, and
    this environment's ``bin`` first on ``PATH`` (the stub's interpreter finds its packages from there).
    """

    ready_path = "/v2/models/eeg2img/ready"  # the repository's other models may not load on this CPU-only server

    def __init__(self, repository: Path, workdir: Path, **kw):
        super().__init__(repository, **kw)
        from pytriton.utils.distribution import get_libs_path, get_root_module_path, get_stub_path

        from .server import prefer_interpreter_libpython

        server = get_root_module_path() / "tritonserver"
        backends = Path(workdir) / "backends"
        shutil.copytree(server / "backends", backends, dirs_exist_ok=True)
        shutil.copy2(get_stub_path(f"{sys.version_info.major}.{sys.version_info.minor}"),
                     backends / "python" / "triton_python_backend_stub")
        self.binary, self.backends = server / "bin" / "tritonserver", backends
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = ":".join(p for p in (str(get_libs_path()), env.get("LD_LIBRARY_PATH")) if p)
        prefer_interpreter_libpython(env)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        self.env = env

    def command(self) -> list[str]:
        return [str(self.binary), "--model-repository", str(self.bundle), "--backend-directory", str(self.backends),
                "--http-address", "127.0.0.1", "--http-port", str(self.http_port), "--grpc-address", "127.0.0.1",
                "--grpc-port", str(self.grpc_port), "--metrics-port", str(self.metrics_port), "--exit-timeout-secs", "5"]
