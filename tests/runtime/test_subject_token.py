"""Sub-10 (id 10) on a paper-era 10-row subject table: the error says what the paper does and which option does it."""

from __future__ import annotations

import numpy as np
import pytest
from support import run_main

from eeg2img_deploy.manifest import read_manifest


@pytest.fixture
def eeg_file(tiny_eeg, tmp_path):
    path = tmp_path / "eeg.npy"
    np.save(path, tiny_eeg[:1])
    return path


def infer_args(bundle, eeg, out, subject):
    return ["infer", "--bundle", bundle, "--eeg", eeg, "--subject", subject, "--out", out, "--prior-steps", "2"]


def one_line_error(code: int, stdout: str, err: str) -> str:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert stdout == ""
    return err


def test_sub10_on_a_10_row_table_names_the_shared_token_and_the_option(monkeypatch, capsys, tmp_path, tiny_bundle,
                                                                       eeg_file):
    assert read_manifest(tiny_bundle).bundle.num_subjects == 10  # the tiny encoder is paper-era
    out = tmp_path / "out"
    err = one_line_error(*run_main(monkeypatch, capsys, infer_args(tiny_bundle, eeg_file, out, 10)))
    assert "[10]" in err and "10 rows" in err and "sub-10 is id 10" in err, err
    assert "shared subject token" in err and "--shared-subject-token" in err and "serve" in err, err
    assert "shared_subject_token" not in err and "=True" not in err, err  # no Python API names
    assert not out.exists()
    # the option the message names is the fix
    code, _, err = run_main(monkeypatch, capsys, [*infer_args(tiny_bundle, eeg_file, out, 10), "--shared-subject-token"])
    assert code == 0, err
    assert (out / "image_000.png").is_file()


def test_an_id_past_the_table_that_is_not_sub10_does_not_mention_sub10(monkeypatch, capsys, tmp_path, tiny_bundle,
                                                                        eeg_file):
    err = one_line_error(*run_main(monkeypatch, capsys, infer_args(tiny_bundle, eeg_file, tmp_path / "out", 12)))
    assert "[12]" in err and "--shared-subject-token" in err and "sub-10" not in err, err


def test_negative_id_message_says_how_ids_map(monkeypatch, capsys, tmp_path, tiny_bundle, eeg_file):
    err = one_line_error(*run_main(monkeypatch, capsys, infer_args(tiny_bundle, eeg_file, tmp_path / "out", -1)))
    assert "sub-10 is 10" in err and "--shared-subject-token" in err and "1..10" not in err, err


def test_the_serve_command_has_the_option_the_message_names():
    from click.testing import CliRunner

    from eeg2img_deploy.serve.command import serve

    help_text = CliRunner().invoke(serve, ["--help"]).output
    assert "--shared-subject-token" in help_text and "sub-10" in help_text


def test_stream_refuses_sub10_before_waiting_for_any_stream(monkeypatch, capsys, tmp_path, tiny_bundle):
    """`stream --subject 10` fails at once (no LSL stream exists here), naming the option `stream` has too."""
    pytest.importorskip("mne_lsl")
    from click.testing import CliRunner

    from eeg2img_deploy.stream.command import stream_cmd

    out = tmp_path / "live"
    args = ["stream", "--bundle", tiny_bundle, "--subject", "10", "--out", out, "--connect-timeout", "0"]
    err = one_line_error(*run_main(monkeypatch, capsys, args))
    assert "sub-10" in err and "--shared-subject-token" in err and "stream" in err, err
    assert not out.exists() or not any(out.iterdir())
    assert "--shared-subject-token" in CliRunner().invoke(stream_cmd, ["--help"]).output
