"""``Pipeline.from_bundle`` and ``infer`` hash a bundle once, then trust its record; ``--verify`` hashes again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from eeg2img_deploy.errors import ManifestError
from eeg2img_deploy.integrity import STAMP_NAME
from eeg2img_deploy.runtime.pipeline import Pipeline
from support import age_files


@pytest.fixture
def bundle(tiny_bundle, tmp_path) -> Path:
    """A copy of the tiny bundle without its record, every file dated a minute back (outside the racy window)."""
    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out, ignore=shutil.ignore_patterns(STAMP_NAME))
    age_files(out)
    return out


def test_second_open_hashes_nothing_and_verify_hashes_again(bundle, hashed_files):
    Pipeline.from_bundle(bundle, threads=1).close()
    first = sorted(hashed_files)
    assert {"encoder.onnx", "unet.onnx", "vae_decoder.onnx", "constants.safetensors"} <= set(first)
    assert "projector.onnx" not in first  # the caption stages open on first use
    hashed_files.clear()
    pipe = Pipeline.from_bundle(bundle, threads=1)
    assert hashed_files == []
    pipe.open_stage("projector")  # a stage opened later is hashed once too
    assert hashed_files == ["projector.onnx", "projector.fp16.onnx"]
    pipe.close()
    hashed_files.clear()
    pipe = Pipeline.from_bundle(bundle, threads=1, verify=True)
    assert sorted(hashed_files) == first
    hashed_files.clear()
    pipe.open_stage("projector")  # --verify holds for stages opened later (with the constants, always checked)
    assert hashed_files == ["constants.safetensors", "projector.onnx", "projector.fp16.onnx"]
    pipe.close()


def test_a_corrupted_file_is_refused_after_it_was_remembered(bundle, hashed_files):
    Pipeline.from_bundle(bundle, threads=1).close()
    path = bundle / "unet.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    hashed_files.clear()
    with pytest.raises(ManifestError, match=r"unet\.onnx does not match the sha256 in manifest\.json"):
        Pipeline.from_bundle(bundle, threads=1)
    assert hashed_files == ["unet.onnx"]  # only the changed file was hashed


def test_infer_verify_from_the_cli(bundle, hashed_files, tiny_dir, tmp_path):
    from click.testing import CliRunner

    from eeg2img_deploy.cli import cli

    common = ["--bundle", str(bundle), "--eeg", str(tiny_dir / "eeg" / "synthetic_eeg.npy"), "--subject", "8",
              "--trials", "0", "--prior-steps", "2", "--threads", "1"]
    runner = CliRunner()
    for out, extra in (("a", []), ("b", []), ("c", ["--verify"])):
        hashed_files.clear()
        run = runner.invoke(cli, ["infer", *common, "--out", str(tmp_path / out), *extra])
        assert run.exit_code == 0, run.output + repr(run.exception)
        assert (tmp_path / out / "image_000.png").is_file()
        if out == "a":
            first = sorted(hashed_files)
            assert first and (bundle / STAMP_NAME).is_file()
        elif out == "b":
            assert hashed_files == []
        else:
            assert sorted(hashed_files) == first
