"""--encoder-factory: a user's module is imported, loaded strictly, and held to the encoder contract."""

import hashlib

import pytest

torch = pytest.importorskip("torch", reason="needs torch (the export extra)")

from eeg2img_deploy.eeg.spec import read_encoder_channels
from eeg2img_deploy.errors import CheckpointError, EEGInputError, EncoderContractError
from eeg2img_deploy.models.encoders import load_eeg_encoder
from eeg2img_deploy.names import EncoderKind

MODEL = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, channels={channels}, out={out}):
        super().__init__()
        self.num_subjects = 3
        self.subject = nn.Embedding(3, out)
        self.proj = nn.Linear(channels * 250, out)

    def forward(self, eeg, subject_ids):
        return self.proj(eeg.flatten(1)){ids}{extra}


def build():
    return Net()
"""


def write_model(folder, *, channels=17, out=1024, ids=" + self.subject(subject_ids)", extra="", name="my_net.py"):
    path = folder / name
    path.write_text(MODEL.format(channels=channels, out=out, ids=ids, extra=extra), encoding="utf-8")
    return path


def save_weights(model_file, folder, **kw):
    """The checkpoint a user would save: the factory's module's state dict."""
    namespace: dict = {}
    exec(compile(model_file.read_text(), str(model_file), "exec"), namespace)
    torch.manual_seed(0)
    path = folder / "weights.pth"
    torch.save(namespace["build"]().state_dict(), path)
    return path


def channels_file(folder, n=17):
    path = folder / "channels.txt"
    path.write_text("# my cap\n" + "\n".join(f"E{i}" for i in range(n)) + "\n\n", encoding="utf-8")
    return path


def test_file_factory_loads_strictly_with_its_spec_and_provenance(tmp_path):
    model = write_model(tmp_path)
    ckpt = save_weights(model, tmp_path)
    enc = load_eeg_encoder(ckpt, factory=f"{model}:build", channels=channels_file(tmp_path))
    assert enc.kind is EncoderKind.CUSTOM and enc.uses_subject_ids and enc.num_subjects == 3
    assert enc.spec.shape == (17, 250) and enc.spec.channels[:2] == ("E0", "E1")
    assert all(torch.equal(v, torch.load(ckpt)[k]) for k, v in enc.module.state_dict().items())
    prov = enc.provenance
    assert prov["factory"] == "my_net.py:build" and (prov["channels"], prov["samples"]) == (17, 250)
    assert prov["factory_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()


def test_module_factory_and_an_encoder_without_ids(tmp_path, monkeypatch):
    write_model(tmp_path, channels=63, ids="", name="lab_encoders.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    ckpt = save_weights(tmp_path / "lab_encoders.py", tmp_path)
    enc = load_eeg_encoder(ckpt, factory="lab_encoders:build")
    assert enc.uses_subject_ids is False and enc.spec.n_channels == 63  # the subject table is unused: no id input


@pytest.mark.parametrize("kw, factory, message", [
    ({}, "no_colon", r"is not MODULE:CALLABLE"),
    ({}, "{dir}/missing.py:build", r"missing\.py does not exist"),
    ({}, "{model}:nope", r"my_net\.py has no callable 'nope'"),
    ({"extra": "\n\nraise ValueError('broken import')"}, "{model}:build", r"importing .* raised ValueError: broken import"),
    ({"out": 512}, "{model}:build", r"returned shape \(2, 512\) torch\.float32, expected \(2, 1024\)"),
    ({"extra": " * torch.rand(1)"}, "{model}:build", r"two calls on the same input differ"),
    ({"ids": "", "extra": " * 0 + 1"}, "{model}:build", r"hardly depends on the EEG"),
    ({"ids": " + 1e-6 * self.subject(subject_ids)"}, "{model}:build", r"subject ids 0 and 1 change its output by only"),
])
def test_contract_breaches_are_one_line_errors(tmp_path, kw, factory, message):
    model = write_model(tmp_path, **kw)
    ckpt = tmp_path / "weights.pth"
    if "raise" not in kw.get("extra", ""):
        ckpt = save_weights(model, tmp_path)
    else:
        torch.save({"w": torch.zeros(1)}, ckpt)
    with pytest.raises(CheckpointError, match=message) as info:
        load_eeg_encoder(ckpt, factory=factory.format(dir=tmp_path, model=model), channels=channels_file(tmp_path))
    assert "\n" not in str(info.value)


def test_wrong_channel_count_names_encoder_channels(tmp_path):
    model = write_model(tmp_path)  # a 17-channel model without --encoder-channels: fed the paper's 63
    with pytest.raises(EncoderContractError, match=r"forward\(eeg \(2, 63, 250\).*raised RuntimeError.*--encoder-channels"):
        load_eeg_encoder(save_weights(model, tmp_path), factory=f"{model}:build")


def test_checkpoint_of_another_model_is_refused_by_key(tmp_path):
    model = write_model(tmp_path)
    torch.save({"proj.weight": torch.zeros(1024, 17 * 250)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"missing keys: subject\.weight.*proj\.bias.*state dict of the module build"):
        load_eeg_encoder(tmp_path / "other.pth", factory=f"{model}:build", channels=channels_file(tmp_path))


def test_encoder_channels_needs_a_factory(tiny_layout, tmp_path):
    with pytest.raises(CheckpointError, match="--encoder-channels describes .*--encoder-factory"):
        load_eeg_encoder(tiny_layout.encoder, channels=channels_file(tmp_path))


def test_channel_files(tmp_path):
    (tmp_path / "c.json").write_text('{"channels": ["Fz", "Cz"], "n_times": 500, "sfreq": 500}', encoding="utf-8")
    assert read_encoder_channels(tmp_path / "c.json").shape == (2, 500)
    (tmp_path / "l.json").write_text('["Fz", "Cz", "Pz"]', encoding="utf-8")
    assert read_encoder_channels(tmp_path / "l.json").channels == ("Fz", "Cz", "Pz")
    (tmp_path / "d.txt").write_text("Fz\nCz\nFz\n", encoding="utf-8")
    with pytest.raises(EEGInputError, match="duplicates"):
        read_encoder_channels(tmp_path / "d.txt")
    (tmp_path / "e.txt").write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(EEGInputError, match="names no channel"):
        read_encoder_channels(tmp_path / "e.txt")
    (tmp_path / "b.json").write_text('{"names": []}', encoding="utf-8")
    with pytest.raises(EEGInputError, match='"channels"'):
        read_encoder_channels(tmp_path / "b.json")



@pytest.mark.parametrize("command", ["export", "reference"])
def test_cli_contract_error_is_one_line_exit_2_nothing_written(command, tiny_dir, tmp_path, monkeypatch, capsys):
    from support import run_main

    model = write_model(tmp_path, out=512)
    ckpt = save_weights(model, tmp_path)
    args = [command, "--weights", tiny_dir, "--encoder-factory", f"{model}:build", "--encoder", ckpt,
            "--encoder-channels", channels_file(tmp_path), "--out", tmp_path / "out"]
    if command == "reference":
        np = pytest.importorskip("numpy")
        np.save(tmp_path / "t.npy", np.zeros((1, 17, 250), np.float32))
        args += ["--eeg", tmp_path / "t.npy", "--subject", "1"]
    code, _, err = run_main(monkeypatch, capsys, args)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "returned shape (2, 512) torch.float32, expected (2, 1024)" in err
    assert not (tmp_path / "out").exists()
