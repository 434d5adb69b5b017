"""Files into a ``triton-repo`` repository: hard links where possible, and the Python-backend models' folders."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..manifest import Manifest


def place(src: Path, dst: Path) -> None:
    """Hard-link (engines are large), or copy across file systems."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def python_model(folder: Path, source: str, bundle: Path, manifest: Manifest) -> Path:
    """A Python-backend model's version folder with its code (``source``, a module of this package), the
    manifest and the constants."""
    version = folder / "1"
    version.mkdir(parents=True)
    shutil.copy2(Path(__file__).with_name(source), version / "model.py")
    place(bundle / manifest.constants_file, version / manifest.constants_file)
    shutil.copy2(bundle / "manifest.json", version / "manifest.json")
    return version
