"""An output that cannot be written is refused when the command line is read, before any work (issue 23, bug 4:
a file in the path, ``/proc/x`` or a read-only folder was a traceback after the whole computation)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support import run_main

from eeg2img_deploy.fileio import unwritable_reason

# (command line before the bad path, the option that takes it, whether it is a file)
COMMANDS = {
    "init-tiny": (["--out"], "--out", False),
    "reference": (["--weights", "{d}", "--eeg", "{d}/x.npy", "--subject", "8", "--out"], "--out", False),
    "export": (["--weights", "{d}", "--out"], "--out", False),
    "build-engines": (["--bundle", "{d}", "--backend", "onnxruntime", "--out"], "--out", False),
    "build-engines timing cache": (["--bundle", "{d}", "--timing-cache"], "--timing-cache", False),
    "infer": (["--bundle", "{d}", "--eeg", "{d}/x.npy", "--subject", "8", "--out"], "--out", False),
    "bench json": (["--bundle", "{d}", "--json"], "--json", True),
    "bench plot": (["--bundle", "{d}", "--plot"], "--plot", True),
    "client": (["--url", "localhost:1", "--eeg", "{d}/x.npy", "--subject", "8", "--out"], "--out", False),
    "triton-repo": (["--bundle", "{d}", "--out"], "--out", False),
    "stream": (["--bundle", "{d}", "--subject", "8", "--out"], "--out", False),
}


def _bad(kind: str, d: Path, file: bool) -> tuple[Path, str]:
    name = "report.json" if file else "out"
    if kind == "file in the path":
        (d / "a-file").write_text("x")
        return d / "a-file" / name, "a-file is a file"
    if kind == "proc":
        return Path("/proc/eeg2img-no-such-dir") / name, "cannot make files in /proc"
    if file:  # a folder where the file should go
        (d / name).mkdir()
        return d / name, "is a (directory|folder)"  # click's own check words it "directory"
    (d / name).write_text("x")
    return d / name, "is a file"


@pytest.mark.parametrize("kind", ["file in the path", "proc", "wrong kind"])
@pytest.mark.parametrize("which", list(COMMANDS))
def test_unwritable_output_is_one_line_before_any_work(monkeypatch, capsys, tmp_path, which, kind):
    before, option, file = COMMANDS[which]
    d = tmp_path / "in"
    d.mkdir()
    (d / "x.npy").write_bytes(b"")  # an input that exists (--eeg is checked first): only --out is wrong
    path, why = _bad(kind, tmp_path, file)
    listing = sorted(tmp_path.rglob("*"))
    args = [which.split()[0], *(a.format(d=d) for a in before), path]
    code, stdout, err = run_main(monkeypatch, capsys, args)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and option in err, err
    assert re.search(why, err), err
    assert stdout == "" and sorted(tmp_path.rglob("*")) == listing


def test_a_read_only_folder_is_refused(tmp_path):
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):  # root writes anyway: then the probe must say it is writable
            assert unwritable_reason(ro / "out", folder=True) is None
        else:
            assert "cannot make files in" in unwritable_reason(ro / "out", folder=True)
    finally:
        ro.chmod(0o755)


def test_writable_outputs_pass_and_nothing_is_left(tmp_path):
    assert unwritable_reason(tmp_path / "new" / "deeper", folder=True) is None
    assert unwritable_reason(tmp_path / "new" / "report.json", folder=False) is None
    assert unwritable_reason(tmp_path, folder=True) is None
    assert list(tmp_path.iterdir()) == []
