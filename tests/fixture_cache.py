"""The on-disk cache of the session fixtures that torch makes: the tiny set (``init-tiny``) and its export.

An entry is made once per content key and copied into each session's temporary folder (a copy: tests may
write into their copy, never into the entry). The key is everything the files depend on: the build's
parameters, every file of the package (``eeg2img_deploy/``), the Python version and machine, and every
installed distribution with its version (torch 2.13.0+cpu and 2.14.1 give different keys). Each entry
lists the sha256 of its files and is checked before each use; one that does not match is built again.

``EEG2IMG_TEST_CACHE=DIR`` turns the cache on (``scripts/test.sh`` sets ``.cache/test-fixtures``); unset, the
fixtures are built in the session's folder as before. ``EEG2IMG_TEST_FIXTURE_PYTHON=PYTHON``: the bundle is the
one that interpreter's environment made, if export finds it up to date for this session's tiny set (``made``):
``scripts/test.sh`` points the eval session (torch 2.14.1) at ``.venv`` (torch 2.13.0), whose init-tiny writes the
same weights, so eval's tests run on the bundle the development environment exported, as a user's eval
environment would. Run as a script, ``python tests/fixture_cache.py NAME DEST`` copies (building first if needed)
the entry NAME of this interpreter's environment to DEST.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE_ENV = "EEG2IMG_TEST_CACHE"
PYTHON_ENV = "EEG2IMG_TEST_FIXTURE_PYTHON"
log = logging.getLogger(__name__)
FILES = "files.json"  # in an entry: {relative path: sha256}, written last


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): _sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@functools.cache
def environment() -> dict:
    """What every entry depends on besides its parameters: the package's files, Python and the installed versions."""
    package = ROOT / "eeg2img_deploy"
    sources = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            sources.update(f"{path.relative_to(package).as_posix()}\0{_sha256(path)}\n".encode())
    dists = sorted({f"{d.metadata['Name']}=={d.version}".lower() for d in metadata.distributions() if d.metadata["Name"]})
    return {"package": sources.hexdigest(), "python": sys.version, "machine": platform.machine(),
            "platform": platform.platform(), "distributions": dists}


def key(name: str, params: dict) -> str:
    payload = json.dumps({"name": name, "params": params, "environment": environment()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def _valid(entry: Path) -> bool:
    try:
        listed = json.loads((entry / FILES).read_text())
    except (OSError, ValueError):
        return False
    return _files(entry / "data") == listed


def cached(name: str, params: dict, build: Callable[[Path], object], dest: Path) -> Path:
    """``dest`` holding the entry ``name``/``params``: copied from the cache, or built there (and stored) on a miss."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        build(dest)
        return dest
    entry = ROOT / root / f"{name}-{key(name, params)}"  # a relative folder is the checkout's
    if _valid(entry):
        shutil.copytree(entry / "data", dest, copy_function=shutil.copyfile)
        os.utime(entry)  # used: kept by _prune
        return dest
    build(dest)
    partial = entry.with_name(f".{entry.name}.{os.getpid()}")  # written whole, then renamed: never read half-written
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(dest, partial / "data", copy_function=shutil.copyfile)
    (partial / "key.json").write_text(json.dumps({"name": name, "params": params, "environment": environment()},
                                                 indent=1, sort_keys=True))
    (partial / FILES).write_text(json.dumps(_files(partial / "data"), indent=1))
    shutil.rmtree(entry, ignore_errors=True)  # an entry that failed its check
    try:
        partial.rename(entry)
    except OSError:  # another session stored it first
        shutil.rmtree(partial, ignore_errors=True)
    _prune(entry.parent, name)
    return dest


def _prune(root: Path, name: str, keep: int = 2) -> None:
    """Entries of ``name`` but the ``keep`` last used removed (each change of the package makes a new one)."""
    entries = sorted(root.glob(f"{name}-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        shutil.rmtree(old, ignore_errors=True)


# The session fixtures' artifacts (tests/conftest.py): name -> (parameters, builder)
SEED = 0
MAX_BATCH = 4


def _params() -> dict[str, dict]:
    from support import TEST_IMAGE_SIZE

    tiny = {"seed": SEED, "image_size": TEST_IMAGE_SIZE}
    return {"tiny": tiny, "bundle": {"tiny": tiny, "max_batch": MAX_BATCH}}


def export_settings():
    """The settings the session's bundle is exported with."""
    from eeg2img_deploy.export.bundle import ExportSettings
    from support import TEST_IMAGE_SIZE

    return ExportSettings(image_size=TEST_IMAGE_SIZE, max_batch=MAX_BATCH)


def _build_tiny(out: Path, tiny: Path | None) -> None:
    from eeg2img_deploy.tiny import init_tiny
    from support import TEST_IMAGE_SIZE

    init_tiny(out, seed=SEED, image_size=TEST_IMAGE_SIZE)


def _build_bundle(out: Path, tiny: Path | None) -> None:
    """``tiny`` (the session's tiny set; without one, the cache's) exported."""
    import tempfile

    from eeg2img_deploy.export.bundle import export_bundle
    from eeg2img_deploy.weights import resolve_weights

    with tempfile.TemporaryDirectory() as tmp:
        tiny = tiny or made("tiny", Path(tmp) / "tiny")
        export_bundle(resolve_weights(tiny), out, export_settings(), progress=False)


BUILDERS: dict[str, Callable[[Path, Path | None], None]] = {"tiny": _build_tiny, "bundle": _build_bundle}


def made(name: str, dest: Path, tiny: Path | None = None) -> Path:
    """The artifact ``name`` at ``dest``, from this environment's cache. ``tiny``: the session's tiny set, what the
    bundle is exported from on a miss.

    With ``$EEG2IMG_TEST_FIXTURE_PYTHON``, the bundle is that environment's, kept only if export itself finds it up
    to date for ``tiny`` (the same weights, by sha256, and settings: ``export_bundle``'s own check); else it is
    exported again here. The tiny set is always this environment's: what init-tiny writes depends on it (eval's
    metric networks only where torchvision imports)."""
    python = os.environ.get(PYTHON_ENV)
    if name == "bundle" and tiny is not None and python and os.path.abspath(python) != os.path.abspath(sys.executable):
        # not resolved: venvs link one binary
        from eeg2img_deploy.export.bundle import export_bundle
        from eeg2img_deploy.weights import resolve_weights

        subprocess.run([python, __file__, name, str(dest)], check=True, env={**os.environ, PYTHON_ENV: ""})
        _, exported = export_bundle(resolve_weights(tiny), dest, export_settings(), progress=False)
        log.info("tiny bundle from %s's cache: %s", python, "exported again (not up to date)" if exported else "up to date")
        return dest
    return cached(name, _params()[name], lambda out: BUILDERS[name](out, tiny), dest)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))  # support
    made(sys.argv[1], Path(sys.argv[2]))
