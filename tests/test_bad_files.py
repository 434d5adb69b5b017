"""Damaged or mislabelled input files get one line that says what the file is and how to fix it (issue 23: a
truncated .npy was a reshape traceback, a text .npz "a pickle", a text .pth "IndexError: pop from empty list",
a manifest with a field removed "TypeError: Artifact.__init__() missing ...")."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from support import run_main


def _npy_cut(path, trials):
    np.save(path, trials)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _npz_cut(path, trials):
    with open(path, "wb") as f:
        np.savez(f, eeg=trials)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


EEG_FILES = {
    "truncated.npy": (_npy_cut, r"truncated\.npy is truncated: its header says \(2, 63, 250\) float32 \(\d+ bytes\) "
                                r"but the file has \d+ bytes"),
    "text.npz": (lambda p, _: p.write_text("trial,value\n1,2\n"), r"text\.npz is not an \.npz file"),
    "truncated.npz": (_npz_cut, r"truncated\.npz is damaged"),
    "text.npy": (lambda p, _: p.write_text("1 2 3\n"), r"text\.npy is not a numpy \.npy file"),
    # a whole .npz with other keys: it was "is damaged (...): copy or save it again"
    "keys.npz": (lambda p, t: np.savez(p, x=t), r"^error: keys\.npz has no 'eeg' array; found keys \['x'\]\. Save"),
}


@pytest.mark.parametrize("name", list(EEG_FILES))
def test_damaged_eeg_file_is_one_line(monkeypatch, capsys, tmp_path, tiny_bundle, tiny_eeg, name):
    make, message = EEG_FILES[name]
    path = tmp_path / name
    make(path, tiny_eeg[:2].astype(np.float32))
    out = tmp_path / "out"
    code, stdout, err = run_main(monkeypatch, capsys, ["infer", "--bundle", tiny_bundle, "--eeg", path, "--subject", "8",
                                                      "--out", out])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert __import__("re").search(message, err, flags=__import__("re").M), err
    assert "pickle" not in err and stdout == "" and not out.exists()


@pytest.mark.parametrize("content, message", [
    (b"this is a text file, not weights\n", "is not a PyTorch checkpoint"),
    (None, "is a safetensors file with a .pth name: rename it to"),
])
def test_a_pth_that_is_not_a_checkpoint_is_named(monkeypatch, capsys, tmp_path, tiny_dir, content, message):
    torch = pytest.importorskip("torch")
    path = tmp_path / "atms.pth"
    if content is None:
        from safetensors.torch import save_file

        save_file({"w": torch.zeros(2)}, str(path))
    else:
        path.write_bytes(content)
    out = tmp_path / "bundle"
    code, stdout, err = run_main(monkeypatch, capsys, ["export", "--weights", tiny_dir, "--encoder", path, "--out", out])
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert "IndexError" not in err and "KeyError" not in err and not out.exists()


@pytest.mark.parametrize("option, name", [("--encoder", "atms.safetensors"),
                                          ("--ip-adapter", "ip-adapter_sdxl_vit-h.safetensors")])
def test_a_truncated_safetensors_file_is_named(monkeypatch, capsys, tmp_path, tiny_dir, option, name):
    """Before: safetensors' "SafetensorError: Error while deserializing header" as a traceback."""
    from safetensors.numpy import save_file

    path = tmp_path / name
    save_file({"image_proj.proj.weight": np.zeros((64, 1024), np.float32)}, str(path))
    path.write_bytes(path.read_bytes()[:500])  # the header whole, the tensor cut short
    out = tmp_path / "bundle"
    code, stdout, err = run_main(monkeypatch, capsys, ["export", "--weights", tiny_dir, option, path, "--out", out])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"cannot read {path} as a safetensors file" in err and "copy or download it again" in err, err
    assert not out.exists()


def _infer_with_manifest_edit(monkeypatch, capsys, tmp_path, tiny_bundle, tiny_eeg, path, edit):
    """``infer`` on a copy of the tiny bundle's manifest whose entry at ``path`` went through ``edit(parent, key)``;
    returns the manifest file, the exit code and stderr."""
    folder = tmp_path / "bundle"
    folder.mkdir()
    shutil.copy(tiny_bundle / "manifest.json", folder)
    d = json.loads((folder / "manifest.json").read_text())
    parent = d
    for key in path[:-1]:
        parent = parent[key]
    edit(parent, path[-1])
    (folder / "manifest.json").write_text(json.dumps(d))
    eeg = tmp_path / "eeg.npy"
    np.save(eeg, tiny_eeg[:1])
    code, _, err = run_main(monkeypatch, capsys, ["infer", "--bundle", folder, "--eeg", eeg, "--subject", "8",
                                                  "--out", tmp_path / "out"])
    return folder / "manifest.json", code, err


@pytest.mark.parametrize("drop, missing", [
    (("artifacts", 0, "sha256"), "artifact encoder.onnx has no field 'sha256'"),
    (("settings",), "the field 'settings' is missing"),
    (("settings", "image_size"), "settings has no field 'image_size'"),
])
def test_manifest_with_a_field_removed_names_folder_field_and_fix(monkeypatch, capsys, tmp_path, tiny_bundle, tiny_eeg,
                                                                   drop, missing):
    def remove(parent, key):
        del parent[key]

    manifest, code, err = _infer_with_manifest_edit(monkeypatch, capsys, tmp_path, tiny_bundle, tiny_eeg, drop, remove)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert str(manifest) in err and missing in err and "eeg2img-deploy export" in err, err
    assert "TypeError" not in err and "KeyError" not in err


@pytest.mark.parametrize("path, value, message", [
    (("settings", "max_batch"), "four", "settings.max_batch is 'four', not int"),
    (("settings", "ip_scale"), True, "settings.ip_scale is True, not float"),
    (("eeg", "sfreq"), "250", "'eeg'.sfreq is '250', not float"),
    (("artifacts", 0, "size_bytes"), 1.5, "artifact encoder.onnx.size_bytes is 1.5, not int"),
])
def test_manifest_with_a_field_of_the_wrong_type_names_it(monkeypatch, capsys, tmp_path, tiny_bundle, tiny_eeg,
                                                          path, value, message):
    """A hand-edited manifest's wrong-typed value is refused when it is read, not a traceback where it is used."""
    def replace(parent, key):
        parent[key] = value

    manifest, code, err = _infer_with_manifest_edit(monkeypatch, capsys, tmp_path, tiny_bundle, tiny_eeg, path, replace)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert str(manifest) in err and message in err and "eeg2img-deploy export" in err, err
    assert not (tmp_path / "out").exists()
