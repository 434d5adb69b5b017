"""The ``README.md`` card of a bundle and of an engine folder: hashes from the manifest, licences, commands the CLI takes."""

from __future__ import annotations

import dataclasses
import os
import shlex
import tempfile
from pathlib import Path

import click
import pytest

from eeg2img_deploy.cards import CARD_NAME, render_card, write_card
from eeg2img_deploy.fileio import sha256_file
from eeg2img_deploy.manifest import (
    MANIFEST_NAME,
    Backend,
    EngineSettings,
    Manifest,
    ParentInfo,
    Source,
    TensorRTSettings,
    read_manifest,
)
from test_manifest import make_folder

LICENCES = ("sai-nc-community", "non-commercial", "Apache-2.0", "MIT", "dongyangli-del/EEG_Image_decode")


def commands(card: str) -> list[list[str]]:
    """The ``eeg2img-deploy`` lines of the card's command block, as argv lists (without the program name)."""
    block = card.split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line)[1:] for line in block.splitlines() if line.startswith("eeg2img-deploy ")]


INPUT_FILES = ("--eeg", "--whitening", "--rename-channels")  # a user's own files: they must exist to be parsed


def parse(args: list[str]) -> dict:
    """What the real command line makes of ``args`` (types, ranges, existing paths), without running it; the user's
    own input files it names are made (empty) in a scratch folder it is parsed in."""
    from eeg2img_deploy.cli import cli

    name, rest = args[0], args[1:]
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as scratch:
        os.chdir(scratch)
        try:
            for option, value in zip(rest, rest[1:]):
                if option in INPUT_FILES and not Path(value).is_absolute():
                    Path(value).parent.mkdir(parents=True, exist_ok=True)
                    Path(value).write_bytes(b"")
            with cli.commands[name].make_context(name, list(rest)) as ctx:
                return ctx.params
        finally:
            os.chdir(cwd)


def hashes_in(manifest: Manifest) -> list[str]:
    out = [manifest.constants_sha256, *(s.sha256 for s in manifest.sources.values())]
    for a in manifest.artifacts:
        out += [a.sha256] + ([a.data_sha256] if a.data_file else [])
    return out


def test_the_parser_refuses_what_the_cli_refuses(tmp_path):
    with pytest.raises(click.UsageError):
        parse(["infer", "--engines", str(tmp_path), "--eeg", "x.npy", "--subject", "8", "--out", "o"])
    with pytest.raises(click.BadParameter):
        parse(["infer", "--bundle", str(tmp_path / "missing"), "--eeg", "x.npy", "--subject", "8", "--out", "o"])


def test_bundle_card(tiny_bundle):
    m = read_manifest(tiny_bundle)
    card = (tiny_bundle / CARD_NAME).read_text()
    assert card == render_card(tiny_bundle, m)
    for h in hashes_in(m):
        assert h in card
    for word in (*LICENCES, "stabilityai/sdxl-turbo", "h94/IP-Adapter", "microsoft/git-large-coco", "madebyollin/taesdxl"):
        assert word in card
    assert "token slice `paper`" in card and "positional embedding off" in card
    assert f"image size {m.bundle.image_size} px" in card and "fused DDPM graphs for 50, 10 steps" in card
    for lib, version in m.libraries.items():
        assert f"{lib} {version}" in card
    argv = commands(card)
    assert [a[0] for a in argv] == ["infer", "bench", "build-engines", "build-engines"]
    params = [parse(a) for a in argv]
    assert all(p["bundle"] == tiny_bundle for p in params)
    assert params[0]["subject"] == 8 and params[2]["backend"] == "tensorrt" and params[3]["provider"] == "cpu"
    assert parse([*argv[0], "--verify"])["verify"] is True  # the card's --verify note


def test_engine_folder_card(ort_engines, tiny_bundle):
    folder, m = ort_engines
    card = (folder / CARD_NAME).read_text()
    for h in hashes_in(m):
        assert h in card
    assert m.parent.manifest_sha256 == sha256_file(tiny_bundle / MANIFEST_NAME) and m.parent.manifest_sha256 in card
    assert f"parent bundle: `{m.parent.bundle}`" in card and "optimized for `CPUExecutionProvider`" in card
    for word in LICENCES:
        assert word in card
    argv = commands(card)
    assert [a[0] for a in argv] == ["infer", "bench", "build-engines"]
    infer, bench, build = (parse(a) for a in argv)
    assert infer["bundle"] == folder and infer["backend"] == "onnxruntime" and infer["provider"] == "cpu"
    assert bench["bundle"] == folder
    assert build["bundle"].resolve() == tiny_bundle.resolve() and build["out"] == folder and build["provider"] == "cpu"


def test_tensorrt_card_and_an_unchanged_card_left_alone(tmp_path):
    bundle = tmp_path / "export" / "b"
    bundle.mkdir(parents=True)
    folder = tmp_path / "engines" / "my engines"  # a space: the commands quote it
    m = make_folder(folder, Backend.TENSORRT)
    engine = dataclasses.replace(m.artifacts[1].engine, gpu_name="Orin")
    m = m.replace(
        engine=EngineSettings(tensorrt=TensorRTSettings(preset="jetson-orin")),
        parent=ParentInfo(manifest_sha256="f" * 64, bundle="b", path="../../export/b"),
        artifacts=tuple(dataclasses.replace(a, engine=engine) for a in m.artifacts),
    )
    path = write_card(folder, m)
    card = path.read_text()
    assert "TensorRT 10.3.0 on Orin (sm_87), preset `jetson-orin`" in card and "f" * 64 in card
    infer, bench, build = (parse(a) for a in commands(card))
    assert infer["bundle"] == folder and infer["backend"] == "tensorrt" and bench["backend"] == "tensorrt"
    assert build["bundle"] == bundle and build["preset"] == "jetson-orin" and build["max_batch"] == m.bundle.max_batch
    before = path.stat().st_mtime_ns
    write_card(folder, m)
    assert path.stat().st_mtime_ns == before
    write_card(folder, m.replace(toolkit_version="9.9"))
    assert "toolkit 9.9" in path.read_text()


def test_an_unknown_source_names_no_licence_it_cannot_vouch_for(tmp_path):
    m = make_folder(tmp_path)
    card = render_card(tmp_path, m.replace(sources={"mystery": Source("ab" * 32, name="m.bin")}))
    assert "| mystery | `m.bin` | `" + "ab" * 32 + "` | - | see the source's own licence |" in card
    assert "Apache" not in card and "sai-nc" not in card
