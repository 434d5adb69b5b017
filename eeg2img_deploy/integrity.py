"""Verify once, remember it: each file a manifest names is hashed until its sha256 has matched, then trusted
while it stays the same file.

A folder keeps ``.verified.json``: per file the size, ``mtime_ns`` and ``ctime_ns`` it had when its sha256
last matched the manifest, and that sha256. A later check skips the hash when all four still agree (the
sha256 with the manifest's, which catches a rebuilt folder); any change, even a ``touch``, re-hashes.
``ctime`` cannot be set back by a program, so a file rewritten and re-dated is re-hashed too.
``force`` (``--verify``) hashes everything again. The record is written atomically and is only a cache:
a read-only folder is checked in full each time, a corrupt record is ignored.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from .errors import ManifestError
from .fileio import atomic_write_text, sha256_file
from .manifest import Manifest

log = logging.getLogger(__name__)

STAMP_NAME = ".verified.json"
STAMP_VERSION = 1
# A file modified less than this before it was hashed is not remembered: a second write within the
# filesystem's timestamp granularity (up to 2 s on FAT) could leave size and times unchanged.
RACY_NS = 2_000_000_000


def manifest_files(manifest: Manifest, stages: list[str] | None = None) -> list[tuple[str, str | None]]:
    """(file, expected sha256) for the constants and every artifact (or those of ``stages``)."""
    checks: list[tuple[str, str | None]] = [(manifest.constants_file, manifest.constants_sha256)]
    for a in manifest.artifacts:
        if stages is None or a.stage in stages:
            checks.append((a.file, a.sha256))
            if a.data_file:
                checks.append((a.data_file, a.data_sha256))
    return checks


def verify_files(folder: str | Path, manifest: Manifest, stages: list[str] | None = None, *,
                 force: bool = False) -> list[str]:
    """Check every file the manifest names (or those of ``stages``) against its recorded sha256.

    Files the folder's record vouches for are not hashed again unless ``force``. Returns the files
    that were hashed. A missing or changed file raises :class:`ManifestError`.
    """
    folder = Path(folder)
    stamp = _read_stamp(folder)
    fresh: dict[str, dict[str, Any]] = {}
    hashed: list[str] = []
    started = time.time_ns()
    for name, expected in manifest_files(manifest, stages):
        path = folder / name
        if not path.is_file():
            raise ManifestError(f"{path} is named in the manifest but missing: export or build the folder again")
        if expected is None:
            continue
        entry = _entry(path.stat(), expected)
        if not force and stamp.get(name) == entry:
            continue
        hashed.append(name)
        if sha256_file(path) != expected:
            raise ManifestError(
                f"{path} does not match the sha256 in manifest.json (changed or corrupt since it was written): "
                "export or build the folder again"
            )
        if entry["mtime_ns"] < started - RACY_NS:
            fresh[name] = entry
    if fresh:
        known = {name for name, _ in manifest_files(manifest)}  # entries of files the manifest dropped go
        _write_stamp(folder, {**{k: v for k, v in stamp.items() if k in known}, **fresh})
    return hashed


def _entry(st: os.stat_result, sha256: str) -> dict[str, Any]:
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "sha256": sha256}


def _read_stamp(folder: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((folder / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) and data.get("version") == STAMP_VERSION else None
    if not isinstance(files, dict):
        return {}
    return {k: v for k, v in files.items() if isinstance(v, dict)}


def _write_stamp(folder: Path, files: dict[str, dict[str, Any]]) -> None:
    try:
        atomic_write_text(folder / STAMP_NAME, json.dumps({"version": STAMP_VERSION, "files": files}, indent=1) + "\n")
    except OSError as e:  # a read-only folder: check in full next time, never fail
        log.debug("could not record the verified files in %s (%s)", folder, e)
