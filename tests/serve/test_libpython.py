"""PyTriton's Python stub must load this interpreter's libpython, not another Python's of the same minor version."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from eeg2img_deploy.serve.server import interpreter_libpython, prefer_interpreter_libpython


def test_the_interpreter_library_goes_first_once():
    folder = interpreter_libpython()
    if folder is None:
        pytest.skip("this Python is linked statically (no libpython3.X.so)")
    assert (folder / sysconfig.get_config_var("INSTSONAME")).is_file()
    env = {"LD_LIBRARY_PATH": f"/opt/x:{folder}:/opt/y"}
    prefer_interpreter_libpython(env)
    prefer_interpreter_libpython(env)
    assert env["LD_LIBRARY_PATH"].split(":") == [str(folder), "/opt/x", "/opt/y"]
    empty: dict[str, str] = {}
    prefer_interpreter_libpython(empty)
    assert empty["LD_LIBRARY_PATH"] == str(folder)


def test_the_stub_resolves_the_interpreter_libpython():
    """What the dynamic loader picks for PyTriton's stub, with the environment ``serve`` sets."""
    pytest.importorskip("pytriton")
    from pytriton.utils.distribution import get_stub_path

    ldd, folder = shutil.which("ldd"), interpreter_libpython()
    if ldd is None or folder is None:
        pytest.skip("needs ldd and a shared libpython")
    stub = get_stub_path(f"{sys.version_info.major}.{sys.version_info.minor}")
    env: dict[str, str] = {}
    prefer_interpreter_libpython(env)
    out = subprocess.run([ldd, str(stub)], env=env, capture_output=True, text=True, timeout=30).stdout
    line = next(ln for ln in out.splitlines() if "libpython" in ln)
    resolved = Path(line.split("=>")[1].split("(")[0].strip())
    assert resolved.resolve().parent == (folder / sysconfig.get_config_var("INSTSONAME")).resolve().parent, line
