"""serve/triton_log.py: tritonserver's log through a FIFO into our logger, less a rejected request's stub line.

The lines are tritonserver 2.51's (PyTriton 0.7.0's bundled server) as written to ``--log-file``, messages
escaped onto one line; the E line of a failed execute() is python_backend's ``pb_stub.cc`` one.
"""

from __future__ import annotations

import logging
import os
import time

from eeg2img_deploy.serve.triton_log import TRITON_LOGGER, TritonLog

STUB = ('E1206 13:08:34.038453 26436 pb_stub.cc:714] "Failed to process the request(s) for model \'eeg2img_0_0\', '
        'message: TritonModelException: Model execute error: Traceback (most recent call last):\\n  File \\"/x/model.py'
        '\\", line 492, in execute\\n    raise triton_responses_or_error\\n{error}\\n"')
LINES = [
    'I1206 13:08:28.914889 26436 model_lifecycle.cc:472] "loading: eeg2img:1"',
    "I1206 13:08:33.646729 26436 server.cc:674] ",
    "+---------+---------+--------+",
    "| eeg2img | 1       | READY  |",
    'W1206 13:08:33.658429 26436 metrics.cc:798] "DCGM unable to start: DCGM initialization error"',
    STUB.format(error="eeg2img_deploy.serve.server.RequestRejected: request 1 of 1 in this batch: subject id(s) [42]"),
    STUB.format(error="ZeroDivisionError: division by zero"),  # a real failure of the model: it stays an error
    'E1206 13:08:28.913319 26436 server.cc:241] "CudaDriverHelper has not been initialized."',
]


def test_tritonserver_lines_at_their_levels_and_no_line_for_a_rejected_request(tmp_path, caplog):
    reader = TritonLog(tmp_path, "RequestRejected")
    assert reader.path.is_fifo()
    reader.start()
    with caplog.at_level(logging.DEBUG, logger=TRITON_LOGGER):
        fd = os.open(reader.path, os.O_WRONLY)  # tritonserver's end: blocks until the reader opened its own
        os.write(fd, "".join(line + "\n" for line in LINES).encode())
        os.close(fd)
        reader.join(10)
        assert not reader.is_alive()
        reader.close()
    got = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == TRITON_LOGGER]
    shown = [(level, text) for level, text in got if level != "DEBUG"]
    assert shown == [
        ("INFO", 'tritonserver model_lifecycle.cc:472] "loading: eeg2img:1"'),
        ("INFO", "tritonserver server.cc:674] "),
        ("INFO", "tritonserver +---------+---------+--------+"),
        ("INFO", "tritonserver | eeg2img | 1       | READY  |"),
        ("WARNING", 'tritonserver metrics.cc:798] "DCGM unable to start: DCGM initialization error"'),
        ("ERROR", "tritonserver " + LINES[6].split(" ", 3)[3]),
        ("ERROR", 'tritonserver server.cc:241] "CudaDriverHelper has not been initialized."'),
    ], shown
    debug = [text for level, text in got if level == "DEBUG"]
    assert len(debug) == 1 and "RequestRejected: request 1 of 1" in debug[0] and reader.dropped == 1
    assert not reader.path.exists()


def test_close_ends_a_reader_tritonserver_never_opened(tmp_path):
    """serve failing before tritonserver starts (a port taken, a model that does not load) leaves no thread behind."""
    reader = TritonLog(tmp_path, "RequestRejected")
    reader.start()
    reader.close(timeout_s=5)
    assert not reader.is_alive() and not reader.path.exists()


def test_close_ends_a_reader_that_had_not_reached_its_open_yet(tmp_path):
    """The race a loaded machine gives: close() before the thread opens the FIFO must still end the thread."""

    class LateReader(TritonLog):
        def run(self) -> None:
            time.sleep(0.3)  # close() runs before this thread reaches its open()
            super().run()

    reader = LateReader(tmp_path, "RequestRejected")
    reader.start()
    reader.close(timeout_s=5)
    assert not reader.is_alive() and not reader.path.exists()
