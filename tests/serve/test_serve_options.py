"""serve's ports and client's --url are checked before anything starts or connects (issue 23, bugs 5 and 6:
a port in use was a traceback after 123 s of Triton retrying; ``--url localhost:abc`` printed eleven
"Exception ignored" blocks after the whole --wait; a dead port was waited on silently)."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
from support import run_main


@pytest.fixture
def listening():
    """A port something listens on (as another serve, or any program, would)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _serve(bundle, *ports):
    return ["serve", "--bundle", bundle, *ports]


def test_a_port_in_use_is_one_line_before_triton(monkeypatch, capsys, tmp_path, listening):
    import eeg2img_deploy.serve.server as server

    monkeypatch.setattr(server, "_pytriton", lambda: pytest.fail("Triton would have been started"))
    from eeg2img_deploy.serve.process import free_ports

    grpc, metrics = free_ports(2)
    for option, args in [("--http-port", ["--http-port", listening, "--grpc-port", grpc, "--metrics-port", metrics]),
                         ("--grpc-port", ["--http-port", grpc, "--grpc-port", listening, "--metrics-port", metrics])]:
        t0 = time.monotonic()
        code, stdout, err = run_main(monkeypatch, capsys, _serve(tmp_path, *args))
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"{option} {listening}" in err and "--http-port/--grpc-port" in err and "Traceback" not in err, err
        assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("args, message", [
    (["--http-port", "70000"], "--http-port"),
    (["--grpc-port", "0"], "--grpc-port"),
    (["--http-port", "18000", "--grpc-port", "18000"], "--http-port and --grpc-port are both 18000"),
])
def test_port_numbers_are_checked(monkeypatch, capsys, tmp_path, args, message):
    code, _, err = run_main(monkeypatch, capsys, _serve(tmp_path, *args))
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_a_host_not_of_this_machine_is_named(monkeypatch, capsys, tmp_path):
    """Before: "--http-port 8000: 192.0.2.1:8000 cannot be bound (Cannot assign requested address; another serve or
    program listens there?)": the port named, the address at fault. 192.0.2.1 is TEST-NET-1, no machine's own."""
    import eeg2img_deploy.serve.server as server

    monkeypatch.setattr(server, "_pytriton", lambda: pytest.fail("Triton would have been started"))
    code, _, err = run_main(monkeypatch, capsys, _serve(tmp_path, "--host", "192.0.2.1"))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--host 192.0.2.1 is not an address of this machine" in err and "--http-port" not in err, err


def test_ports_have_help(monkeypatch, capsys):
    _, out, _ = run_main(monkeypatch, capsys, ["serve", "--help"])
    for option in ("--http-port", "--grpc-port", "--metrics-port"):
        line = next(line for line in out.splitlines() if line.strip().startswith(option))
        assert "Port of Triton" in line + out.split(line, 1)[1].splitlines()[0], out


def _client(tmp_path, url, *extra):
    eeg = tmp_path / "eeg.npy"
    np.save(eeg, np.zeros((1, 63, 250), np.float32))
    return ["client", "--url", url, "--eeg", eeg, "--subject", "8", "--out", tmp_path / "out", *extra]


@pytest.mark.parametrize("url", ["localhost:abc", "localhost", "localhost:8000/v2/models", "localhost:70000"])
def test_client_url_is_parsed_before_connecting(monkeypatch, capsys, tmp_path, url):
    t0 = time.monotonic()
    code, _, err = run_main(monkeypatch, capsys, _client(tmp_path, url, "--wait", "30"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--url" in err and "localhost:8000" in err, err
    assert "Exception ignored" not in err and time.monotonic() - t0 < 10
    assert not (tmp_path / "out").exists()


def test_client_says_it_is_waiting(monkeypatch, capsys, tmp_path):
    pytest.importorskip("tritonclient.http")
    from eeg2img_deploy.serve.process import free_ports

    url = f"127.0.0.1:{free_ports(1)[0]}"  # nothing listens there
    t0 = time.monotonic()
    code, _, err = run_main(monkeypatch, capsys, _client(tmp_path, url, "--wait", "1"))
    lines = err.strip().splitlines()
    assert code == 2 and time.monotonic() - t0 >= 1
    assert lines[0].startswith(f"waiting up to 1 s for the Triton server at {url}") and "--wait" in lines[0], err
    assert lines[-1].startswith("error: cannot reach a Triton server") and len(lines) == 2, err


def test_load_report_counts_the_server_batch_sizes():
    """client --load's summary: how often the server ran each batch size (none answered: an empty table)."""
    from eeg2img_deploy.serve.client import LoadReport

    report = LoadReport(requests=5, concurrency=2, wall_s=0.5, latencies_ms=[3.0, 1.0, 2.0, 5.0],
                        batch_sizes=[2, 1, 2, 4], errors=["timeout"])
    summary = report.summary()
    assert summary["server_batch_sizes"] == {"1": 1, "2": 2, "4": 1}
    assert summary["throughput_rps"] == 8.0 and summary["errors"] == 1
    empty = LoadReport(requests=1, concurrency=1, wall_s=0.1, latencies_ms=[], batch_sizes=[], errors=["refused"])
    assert empty.summary()["server_batch_sizes"] == {}


@pytest.mark.parametrize("option", ["--eeg", "--whitening"])
def test_client_names_a_missing_input_file_before_waiting_for_the_server(monkeypatch, capsys, tmp_path, option):
    """Before: --wait seconds for a server, "cannot reach a Triton server", and only then the missing file."""
    from eeg2img_deploy.serve.process import free_ports

    args = _client(tmp_path, f"127.0.0.1:{free_ports(1)[0]}", "--wait", "30")
    if option == "--eeg":
        args[args.index("--eeg") + 1] = tmp_path / "missing.npy"
    else:
        args += ["--whitening", tmp_path / "missing.npy"]
    t0 = time.monotonic()
    code, _, err = run_main(monkeypatch, capsys, args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and option in err and "does not exist" in err, err
    assert "waiting" not in err and time.monotonic() - t0 < 10 and not (tmp_path / "out").exists()
