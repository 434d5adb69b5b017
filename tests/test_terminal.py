"""Output when stdout/stderr is not a terminal (CI logs, ``| tee``): no 80-column wrapping of log lines or
table titles (issue 23: lines broke in the middle of file names); on a terminal, long commands show what
they are doing by default."""

from __future__ import annotations

import io
import logging

LONG = "/data/" + "a-long-folder-name/" * 8 + "bundle"  # 158 characters


def test_log_lines_do_not_wrap_off_a_terminal(capsys):
    from eeg2img_deploy.cli_options import setup_logging

    setup_logging(1)
    try:
        logging.getLogger("eeg2img_deploy.test").info("opening %s", LONG)
        logging.getLogger("eeg2img_deploy.test").warning("careful with %s", LONG)
    finally:
        setup_logging(0)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].endswith(f"INFO    opening {LONG}") and lines[1].endswith(f"WARNING careful with {LONG}"), lines


def test_table_titles_do_not_wrap_off_a_terminal(capsys):
    from eeg2img_deploy.cli import print_timings

    print_timings(f"infer of {LONG}", {"encoder": 1.5, "total": 10.25})
    out = capsys.readouterr().out
    assert any(f"infer of {LONG}" in line for line in out.splitlines()), out


def test_bench_table_does_not_wrap_off_a_terminal(capsys):
    from eeg2img_deploy.bench.render import print_report
    from eeg2img_deploy.bench.stats import report_stages

    stats = {"p50": 1.0, "p90": 1.0, "p99": 1.0, "mean": 1.0, "min": 1.0, "max": 1.0}
    settings = {"backend": "onnxruntime", "provider": LONG, "batch": 1, "image_size": 128, "steps": 1,
                "prior_steps": 50, "runs": 3, "low_level": None}
    stages = (*report_stages(settings), "total")
    runtime = {"latency_ms": {k: stats for k in stages}, "overhead": {"ms": stats, "pct": stats}, "load_ms": 1.0,
               "first_call_ms": 1.0, "throughput_images_per_s": 1.0, "memory": {"peak_rss_mb": 1.0, "peak_rss_scope": "x"}}
    print_report({"settings": settings, "runtime": runtime})
    assert any(LONG in line for line in capsys.readouterr().out.splitlines())


def test_a_long_command_says_what_it_is_doing_on_a_terminal(monkeypatch):
    from rich.console import Console

    from eeg2img_deploy import terminal

    screen = io.StringIO()
    monkeypatch.setattr(terminal, "console", lambda stderr=False: Console(file=screen, force_terminal=True, width=100))
    with terminal.Status() as status:
        status.step("reconstructing 2 trial(s)")
    assert "reconstructing 2 trial(s)" in screen.getvalue() and "s so far" in screen.getvalue()
    quiet = io.StringIO()
    monkeypatch.setattr(terminal, "console", lambda stderr=False: Console(file=quiet, force_terminal=False))
    with terminal.Status() as status:
        status.step("reconstructing 2 trial(s)")
    assert quiet.getvalue() == ""  # a log file gets no spinner frames
