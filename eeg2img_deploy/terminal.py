"""Where the CLI's tables and log lines go: at a terminal's width, and unwrapped when not on a terminal (CI
logs, ``| tee``, a service's log file), where rich's 80-column default would break lines in file names.

rich only at call time.
"""

from __future__ import annotations

import logging
import sys

UNWRAPPED = 100_000  # columns when not on a terminal: a table takes its natural width, nothing wraps


def console(*, stderr: bool = False):
    """A rich Console for results (stdout) or notes (stderr)."""
    from rich.console import Console

    c = Console(stderr=stderr)
    return c if c.is_terminal else Console(stderr=stderr, width=UNWRAPPED, soft_wrap=True)


class _StderrHandler(logging.StreamHandler):
    """Plain lines on whatever ``sys.stderr`` is when a record comes (tests swap it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ sets it: always sys.stderr instead
        pass


def log_handler() -> logging.Handler:
    """rich's handler on a terminal; one plain line per record elsewhere."""
    c = console(stderr=True)
    if c.is_terminal:
        from rich.logging import RichHandler

        return RichHandler(console=c, show_path=False)
    return _StderrHandler()


class Status:
    """What a long command is doing, on a terminal's stderr (a spinner, the step and the time it has taken);
    nothing elsewhere, where log lines (-v) say it instead."""

    def __init__(self) -> None:
        c = console(stderr=True)
        verbose = logging.getLogger("eeg2img_deploy").isEnabledFor(logging.INFO)  # -v: the log lines say it
        self._live = c.status("starting") if c.is_terminal and not verbose else None
        self._t0 = 0.0

    def __enter__(self) -> Status:
        import time

        self._t0 = time.monotonic()
        if self._live is not None:
            self._live.__enter__()
        return self

    def step(self, text: str) -> None:
        import time

        logging.getLogger("eeg2img_deploy").info("%s", text)
        if self._live is not None:
            self._live.update(f"{text} ({time.monotonic() - self._t0:.0f} s so far)")

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
