"""tritonserver's own log, read into ours, less the one line a rejected request used to add.

PyTriton prints everything ``tritonserver`` writes on stdout (which holds only results here) and keeps a copy
of it in memory for the server's life (``pytriton/server/triton_server.py``, ``TritonServer._record_logs``).
``serve`` instead points tritonserver's ``--log-file`` (PyTriton's ``TritonConfig.log_file``) at a FIFO that
:class:`TritonLog` reads, line by line, into the logger ``eeg2img_deploy.serve.tritonserver``: I, W and E lines at
INFO, WARNING and ERROR (so tritonserver's startup tables show with ``-v``, its warnings and errors always).

Why one line is dropped: for every request the infer function rejects, Triton's Python-backend stub logs
``E... pb_stub.cc:...] "Failed to process the request(s) for model 'eeg2img_0_0', message: TritonModelException:
Model execute error: Traceback ...RequestRejected: ..."`` (python_backend ``src/pb_stub.cc``,
``Stub::ProcessRequests``: it logs whenever the model's ``execute()`` raises). The backend's supported way to
refuse one request without that line is to return an ``InferenceResponse(error=TritonError(...))`` for it (its
README, "Error Handling"; ``triton-repo``'s BLS model does so), but PyTriton's model (``pytriton/proxy/model.py``,
``execute``) turns any error of the infer callable into a raised ``TritonModelException``, and Triton's log
settings (``--log-error`` and the ``/v2/logging`` endpoint) are server-wide: turning errors off would hide real
ones. So the line is recognised here, by the name of our own exception in it, and dropped (``-vv`` shows it at
DEBUG); the rejection is already one INFO line of ours (``server._RejectionsAsInfo``). Every other E line passes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from pathlib import Path

TRITON_LOGGER = "eeg2img_deploy.serve.tritonserver"
LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR}
# glog's prefix, as Triton writes it: level letter, MMDD, time, thread id, then "file:line] message"
RECORD = re.compile(r"([IWE])\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ (.*)")
FAILED_EXECUTE = "Failed to process the request(s) for model"  # pb_stub.cc's line for an execute() that raised


class TritonLog(threading.Thread):
    """Reads tritonserver's log from a FIFO in ``folder`` (:attr:`path`, its ``--log-file``) into our logger.

    ``rejected``: the exception name that marks a rejected request's traceback (the line is dropped). A daemon
    thread: it ends when tritonserver (and the Python stubs it started) close the FIFO; :meth:`close` also
    ends it where tritonserver never opened it.
    """

    def __init__(self, folder: Path, rejected: str) -> None:
        super().__init__(name="tritonserver-log", daemon=True)
        self.path = Path(folder) / "tritonserver.log"
        os.mkfifo(self.path)
        self.rejected = f"{rejected}: "
        self.log = logging.getLogger(TRITON_LOGGER)
        self.dropped = 0

    def run(self) -> None:
        level = logging.INFO
        with open(self.path, "rb") as fifo:  # returns once tritonserver opens its end
            for raw in fifo:
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                level, text = self.record(line, level)
                if not text.strip():
                    continue
                if level == logging.ERROR and FAILED_EXECUTE in text and self.rejected in text:
                    self.dropped += 1
                    self.log.debug("tritonserver (a rejected request): %s", text)
                    continue
                self.log.log(level, "tritonserver %s", text)

    @staticmethod
    def record(line: str, previous: int) -> tuple[int, str]:
        """(level, text) of one line: a record's own level, or (a table's continuation) the previous one."""
        m = RECORD.fullmatch(line)
        return (LEVELS[m.group(1)], m.group(2)) if m else (previous, line)

    def close(self, timeout_s: float = 5.0) -> None:
        """Let the reader finish (unblocking it where tritonserver never opened the FIFO), then remove the FIFO.

        Opening the FIFO's write end ends a reader blocked in ``open``; it fails (ENXIO) while the thread has not
        reached its ``open`` yet, so it is tried again until the thread has ended or ``timeout_s`` has passed.
        """
        deadline = time.monotonic() + timeout_s
        while self.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(OSError):  # ENXIO: no reader has the FIFO open (yet, or any more)
                os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            self.join(0.05)
        with contextlib.suppress(OSError):
            self.path.unlink()
