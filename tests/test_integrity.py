"""Verify once, remember it (``integrity.py``): which files are hashed on a second check, and which never pass.

Torch-free: the folders are the small fake bundle of ``test_manifest``; the pipeline-level checks are in
``tests/runtime/test_verify_stamp.py``.
"""

from __future__ import annotations

import errno
import json
import os

import pytest

from eeg2img_deploy import integrity
from eeg2img_deploy.errors import ManifestError
from eeg2img_deploy.integrity import RACY_NS, STAMP_NAME, verify_files
from support import age_files
from test_manifest import make_folder

ALL_FILES = ["constants.safetensors", "encoder.onnx", "unet.fp16.onnx", "unet.fp16.onnx.data"]


@pytest.fixture
def folder(tmp_path):
    m = make_folder(tmp_path / "bundle")
    age_files(tmp_path / "bundle")
    return tmp_path / "bundle", m


def test_second_check_hashes_nothing(folder, hashed_files):
    path, m = folder
    assert sorted(verify_files(path, m)) == ALL_FILES
    assert sorted(hashed_files) == ALL_FILES
    stamp = json.loads((path / STAMP_NAME).read_text())
    assert stamp["files"]["encoder.onnx"]["sha256"] == m.artifacts[0].sha256
    hashed_files.clear()
    assert verify_files(path, m) == [] and hashed_files == []
    assert verify_files(path, m, stages=["encoder"]) == [] and hashed_files == []


def test_a_touched_file_is_hashed_again_and_only_it(folder, hashed_files):
    path, m = folder
    verify_files(path, m)
    hashed_files.clear()
    os.utime(path / "encoder.onnx")  # now: a new mtime, same content
    assert verify_files(path, m) == ["encoder.onnx"] == hashed_files


def test_a_changed_byte_is_refused_even_with_its_old_mtime_restored(folder, hashed_files):
    path, m = folder
    verify_files(path, m)
    target = path / "unet.fp16.onnx.data"
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[3] ^= 0x01
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: only ctime tells
    assert target.stat().st_size == st.st_size and target.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(ManifestError, match=r"unet\.fp16\.onnx\.data does not match the sha256 in manifest\.json") as e:
        verify_files(path, m)
    assert "\n" not in str(e.value)
    with pytest.raises(ManifestError, match="does not match"):  # and it stays refused: the record never vouched for it
        verify_files(path, m)


def test_force_hashes_everything(folder, hashed_files):
    path, m = folder
    verify_files(path, m)
    hashed_files.clear()
    assert sorted(verify_files(path, m, force=True)) == ALL_FILES == sorted(hashed_files)


def test_a_manifest_with_another_hash_is_not_vouched_for_by_the_record(folder, hashed_files):
    path, m = folder
    verify_files(path, m)
    other = m.replace(constants_sha256="0" * 64)  # e.g. a folder rebuilt with a new manifest
    with pytest.raises(ManifestError, match=r"constants\.safetensors does not match"):
        verify_files(path, other)


def test_a_fresh_file_is_checked_but_not_remembered(tmp_path, hashed_files):
    m = make_folder(tmp_path)  # written just now: inside the racy window
    assert RACY_NS >= 1_000_000_000
    verify_files(tmp_path, m)
    hashed_files.clear()
    assert sorted(verify_files(tmp_path, m)) == ALL_FILES


@pytest.mark.parametrize("text", ["{not json", '{"version": 1, "files": []}', '{"version": 99, "files": {}}', "[]"])
def test_an_unreadable_record_is_ignored(folder, hashed_files, text):
    path, m = folder
    (path / STAMP_NAME).write_text(text)
    assert sorted(verify_files(path, m)) == ALL_FILES
    hashed_files.clear()
    assert verify_files(path, m) == []  # and replaced by a good one


def test_a_read_only_folder_still_opens(folder, hashed_files, monkeypatch):
    path, m = folder

    def read_only(*a, **kw):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(integrity, "atomic_write_text", read_only)
    verify_files(path, m)
    verify_files(path, m)
    assert not (path / STAMP_NAME).exists()
    assert len(hashed_files) == 2 * len(ALL_FILES)  # checked in full each time


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_folder_without_write_permission_still_opens(folder):
    path, m = folder
    path.chmod(0o555)
    try:
        verify_files(path, m)
        assert not (path / STAMP_NAME).exists()
    finally:
        path.chmod(0o755)


def test_files_the_manifest_dropped_leave_the_record(folder):
    path, m = folder
    verify_files(path, m)
    smaller = m.replace(artifacts=m.artifacts[:1])
    os.utime(path / "encoder.onnx", ns=(1, 1))  # old enough to be remembered, changed: rewrites the record
    verify_files(path, smaller)
    assert sorted(json.loads((path / STAMP_NAME).read_text())["files"]) == ["constants.safetensors", "encoder.onnx"]
