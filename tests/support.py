"""Shared test settings (importable as ``support``: pytest puts tests/ on sys.path, see pyproject.toml)."""

# Small images keep the suite fast; every code path is the same as at 512x512.
TEST_IMAGE_SIZE = 128


def psnr(a, b) -> float:
    """PSNR in dB of two uint8 images (inf when equal)."""
    import numpy as np

    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def age_files(folder, seconds: int = 60) -> None:
    """Date every file of ``folder`` ``seconds`` back: past the window in which integrity.py remembers no file."""
    import os
    import time

    t = time.time_ns() - seconds * 1_000_000_000
    for p in folder.iterdir():
        os.utime(p, ns=(t, t))


def run_main(monkeypatch, capsys, args) -> tuple[int, str, str]:
    """``eeg2img-deploy ARGS`` through the real entry point; returns (exit code, stdout, stderr)."""
    import sys

    from eeg2img_deploy import cli

    monkeypatch.setattr(sys, "argv", ["eeg2img-deploy", *map(str, args)])
    code = 0
    try:
        cli.main()
    except SystemExit as e:
        code = e.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def import_blocker(blocked: tuple[str, ...]) -> str:
    """Python source that makes the packages ``blocked`` (and their submodules) unimportable from then on,
    as on a machine without them: run it first in a fresh interpreter (``-c``, or as ``sitecustomize``)."""
    return f"""
import importlib.abc, sys

BLOCKED = {blocked!r}


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:  # "onnx" only: onnxruntime stays importable
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, _Blocker())
for mod in [m for m in sys.modules if m.split(".")[0] in BLOCKED]:
    del sys.modules[mod]
"""
