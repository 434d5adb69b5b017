"""The command line: --help without torch, ``reference`` end to end, and clear errors for bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from eeg2img_deploy import cli

BLOCK_TORCH = textwrap.dedent(
    """
    import sys
    from importlib.abc import MetaPathFinder

    class BlockTorch(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "diffusers", "transformers"):
                raise ImportError(f"{name} is blocked for this test")

    sys.meta_path.insert(0, BlockTorch())
    sys.argv = ["eeg2img-deploy", *sys.argv[1:]]
    from eeg2img_deploy.cli import main
    main()
    assert "torch" not in sys.modules
    """
)


@pytest.mark.parametrize("args, expected", [(["--help"], ["init-tiny", "reference"]),
                                            (["reference", "--help"], ["--weights", "--prior-steps", "--vae"])])
def test_help_works_without_torch(args, expected):
    proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH, *args], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    for word in expected:
        assert word in proc.stdout


def run_main(monkeypatch, capsys, args) -> tuple[int, str]:
    """``eeg2img-deploy ARGS`` in this process, through the real entry point; returns (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["eeg2img-deploy", *map(str, args)])
    code = 0
    try:
        cli.main()
    except SystemExit as e:
        code = e.code or 0
    return code, capsys.readouterr().err


def reference_args(weights, eeg, out, *extra):
    return ["reference", "--weights", weights, "--eeg", eeg, "--subject", "8", "--out", out,
            "--image-size", "128", "--prior-steps", "5", *extra]


def test_reference_end_to_end(tiny_dir, tmp_path):
    from click.testing import CliRunner

    out = tmp_path / "out"
    result = CliRunner().invoke(cli.cli, reference_args(tiny_dir, tiny_dir / "eeg" / "synthetic_eeg.npy", out, "--trials", "0:2"))
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "image_000.png", "image_001.png", "result.json"]
    data = json.loads((out / "result.json").read_text())
    assert len(data["eeg_embeds"]) == 2 and len(data["eeg_embeds"][0]) == 1024
    assert len(data["image_embeds"]) == 2 and data["subject_ids"] == [8, 8]
    assert data["images"] == ["image_000.png", "image_001.png", "grid.png"]
    assert data["prior_steps"] == 5 and data["image_size"] == 128
    assert data["sources"]["encoder"]["num_subjects"] == 10

    from PIL import Image

    assert np.asarray(Image.open(out / "image_000.png")).shape == (128, 128, 3)
    assert np.asarray(Image.open(out / "grid.png")).shape == (128, 256, 3)


@pytest.fixture
def weights_without_prior(tiny_dir, tmp_path):
    root = tmp_path / "weights"
    root.mkdir()
    for name in ("encoder", "sdxl-turbo", "ip-adapter", "taesdxl"):
        (root / name).symlink_to(tiny_dir / name, target_is_directory=True)
    return root


def test_missing_component(monkeypatch, capsys, tmp_path, weights_without_prior, tiny_dir):
    out = tmp_path / "out"
    code, err = run_main(monkeypatch, capsys, reference_args(weights_without_prior, tiny_dir / "eeg" / "synthetic_eeg.npy", out))
    assert code == 2 and "error: no diffusion prior found" in err and "--prior" in err
    assert len(err.strip().splitlines()) == 1, err  # it was the whole layout, twelve lines
    assert not out.exists()
    code, err = run_main(monkeypatch, capsys, reference_args(tiny_dir, tiny_dir / "eeg" / "synthetic_eeg.npy", out,
                                                             "--prior", tmp_path / "nope.pt"))
    assert code == 2 and err.strip() == f"error: --prior {tmp_path / 'nope.pt'} does not exist: give the diffusion " \
                                        "prior checkpoint's path", err
    assert not out.exists()


@pytest.mark.parametrize("device, message", [("banana", "'banana' is not a torch device"),
                                             ("cuda:99", "cuda:99: this ")])
def test_a_torch_device_this_machine_lacks_is_refused_before_loading(monkeypatch, capsys, tmp_path, tiny_dir, device,
                                                                     message):
    """Before: a traceback from deep in the model load (RuntimeError / "Torch not compiled with CUDA enabled")."""
    out = tmp_path / "out"
    code, err = run_main(monkeypatch, capsys, reference_args(tiny_dir, tiny_dir / "eeg" / "synthetic_eeg.npy", out,
                                                             "--torch-device", device))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--torch-device" in err and message in err, err
    assert not out.exists()


@pytest.mark.parametrize("case, message", [
    ("nan", "NaN"),
    ("short", "300"),
    ("trials", "--trials"),
    ("trials_empty", "selects no trial"),
])
def test_bad_inputs_give_a_clear_error_and_no_output(monkeypatch, capsys, tmp_path, tiny_dir, tiny_eeg, case, message):
    eeg_path, extra = tmp_path / "eeg.npy", []
    if case == "nan":
        bad = tiny_eeg.copy()
        bad[1, 5, 17] = np.nan
        np.save(eeg_path, bad)
    elif case == "short":
        np.save(eeg_path, np.zeros((63, 300), np.float32))
    else:
        np.save(eeg_path, tiny_eeg)
        extra = ["--trials", "a:b" if case == "trials" else "7:9"]
    out = tmp_path / "out"
    code, err = run_main(monkeypatch, capsys, reference_args(tiny_dir, eeg_path, out, *extra))
    assert code == 2, err
    assert message in err
    assert "Traceback" not in err
    assert not out.exists()


def _options():
    import click

    for name, command in sorted(cli.cli.commands.items()):
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                yield name, param


def test_every_option_has_a_help_text_that_is_true():
    """Before: --seed, --prior-steps, --runs, serve's ports and more had none; bench --caption promised a
    captions.txt it does not write; reference and client --whitening spoke of a bundle they do not take."""
    missing = [f"{name} {param.opts[0]}" for name, param in _options() if not (param.help or "").strip()]
    assert missing == []
    helps = {(name, param.opts[0]): param.help for name, param in _options()}
    assert "captions.txt" not in helps["bench", "--caption"] and "captions.txt" in helps["infer", "--caption"]
    assert "bundle" not in helps["reference", "--whitening"] and "bundle" not in helps["client", "--whitening"].split("(")[0]
    assert "sent" in helps["client", "--whitening"] and "ship none" in helps["infer", "--whitening"]
    assert "default" in helps["build-engines", "--backend"] and "onnxruntime" in helps["build-engines", "--backend"]


def _meaning(param) -> str:
    """What an option takes, whichever click type spells it: a flag, a path, a number, or which choices."""
    import click

    from eeg2img_deploy.cli_options import Ranged
    from eeg2img_deploy.core.options import OneOf

    t = param.type
    if param.is_flag:
        return "flag"
    if isinstance(t, Ranged) and isinstance(t.rule, OneOf):
        return "one of " + "|".join(map(str, t.rule.values))
    if isinstance(t, click.Choice):
        return "one of " + "|".join(map(str, t.choices))
    if isinstance(t, click.Path):
        return "path"
    return {"integer": "int", "integer range": "int", "int": "int", "float": "float"}.get(t.name, t.name)


def test_each_option_name_means_one_thing():
    """Issue 23: --low-level was a checkpoint path (reference/export) and a flag (infer/bench); export --precision
    took 'both' where every other --precision takes one of fp32|fp16; init-tiny took its folder as an argument
    where every other command takes --out; --events was an events file (infer/reference/client) and a marker
    stream's name (stream, and infer on an .xdf), now --events FILE and --event-stream NAME."""
    import click

    meanings: dict[str, dict[str, str]] = {}
    for name, param in _options():
        for opt in param.opts:
            meanings.setdefault(opt, {})[name] = _meaning(param)
    mixed = {opt: by_command for opt, by_command in meanings.items() if len(set(by_command.values())) > 1}
    assert mixed == {}
    helps = {(name, param.opts[0]): param.help for name, param in _options()}
    assert set(meanings["--events"].values()) == {"path"} and "stream" not in meanings["--events"]
    assert all("marker stream" not in helps[name, "--events"] for name in meanings["--events"])
    assert set(meanings["--event-stream"].values()) == {"text"} and {"stream", "infer"} <= set(meanings["--event-stream"])
    positional = [name for name, command in cli.cli.commands.items()
                  if any(not isinstance(p, click.Option) for p in command.params)]
    assert positional == []  # every folder is an option (init-tiny's was an argument)
    assert meanings["--low-level"] == {c: "flag" for c in ("bench", "infer", "reference")}
    assert set(meanings["--low-level-encoder"]) == {"export", "reference"}


def test_export_takes_the_precisions_every_command_takes(monkeypatch, capsys, tmp_path):
    from support import run_main

    code, out, err = run_main(monkeypatch, capsys, ["export", "--weights", tmp_path, "--precision", "both"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--precision" in err and "'fp32', 'fp16'" in err, err
    assert list(tmp_path.iterdir()) == []


def test_the_old_events_spelling_names_the_new_option(monkeypatch, capsys, tmp_path, tiny_bundle):
    """Issue 23: `stream --events NAME` and `infer --eeg rec.xdf --events NAME` named a marker stream; that is
    --event-stream now, and the old spelling gets one line naming it (not "file not found"), before any work."""
    from support import run_main

    xdf = tmp_path / "rec.xdf"
    xdf.write_bytes(b"XDF:")  # refused before it is read
    out = tmp_path / "out"
    code, stdout, err = run_main(monkeypatch, capsys, ["infer", "--bundle", tiny_bundle, "--eeg", xdf, "--subject", "8",
                                                       "--events", "Stimuli", "--out", out])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--event-stream Stimuli" in err, err
    assert "Traceback" not in err and not out.exists()
    code, stdout, err = run_main(monkeypatch, capsys, ["stream", "--bundle", tiny_bundle, "--subject", "8", "--out", out,
                                                       "--events", "Stimuli"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--event-stream Stimuli" in err, err
    assert not out.exists()
    np.save(tmp_path / "e.npy", np.zeros((63, 250), np.float32))
    code, stdout, err = run_main(monkeypatch, capsys, ["infer", "--bundle", tiny_bundle, "--eeg", tmp_path / "e.npy",
                                                       "--subject", "8", "--event-stream", "Stimuli", "--out", out])
    assert code == 2 and "--event-stream" in err and ".xdf" in err and not out.exists(), err


def test_stream_replay_of_epoched_trials_names_replay(monkeypatch, capsys, tmp_path, tiny_bundle, tiny_eeg):
    """Before: "x.npy is not a raw recording mne can read here; expected one of .fif, ..." (no option named, .xdf
    left out), after the engines had started opening."""
    from support import run_main

    np.save(tmp_path / "trials.npy", tiny_eeg)
    out = tmp_path / "out"
    code, _, err = run_main(monkeypatch, capsys, ["stream", "--bundle", tiny_bundle, "--subject", "8", "--out", out,
                                                  "--replay", tmp_path / "trials.npy"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--replay" in err and ".xdf" in err, err
    assert "trials.npy is not a recording to play" in err and not out.exists()
