"""Atomic writes and hashing: an interrupted export or build never leaves a file that looks complete."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give them the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def staging_dir(final: str | os.PathLike) -> Iterator[Path]:
    """A scratch folder beside ``final``, removed on exit; callers move finished files out of it."""
    final = Path(final)
    final.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".staging-", dir=final))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def unwritable_reason(path: str | os.PathLike, *, folder: bool) -> str | None:
    """Why ``path`` (a folder to fill, or a file to write) cannot be written, or None when it can; creates nothing.

    Looks at the nearest part of the path that exists: it must be a folder this process can make files in
    (tried with a temporary file, so a read-only mount or ``/proc`` fails here, not after the work).
    """
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        return f"{path} is a {'file' if folder else 'folder'}, not a {'folder' if folder else 'file'}"
    existing = path if folder else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, so nothing can be made under it"
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=existing)
    except OSError as e:
        return f"cannot make files in {existing} ({e.strerror})"
    os.close(fd)
    os.unlink(probe)
    return None
