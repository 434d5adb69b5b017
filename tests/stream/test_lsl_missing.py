"""Without mne-lsl (or with a liblsl that cannot load), `stream` says what to install."""

import sys

import pytest

from eeg2img_deploy.errors import BackendUnavailableError
from eeg2img_deploy.stream.lsl import import_mne_lsl


def test_missing_mne_lsl_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mne_lsl", None)
    monkeypatch.setitem(sys.modules, "mne_lsl.lsl", None)
    with pytest.raises(BackendUnavailableError, match=r"pip install 'eeg2img-deploy\[stream\]'"):
        import_mne_lsl()


def test_unloadable_liblsl_says_what_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("mne_lsl"):
            raise RuntimeError("The liblsl library packaged with mne-lsl could not be loaded")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(BackendUnavailableError, match="could not load the LSL library.*liblsl"):
        import_mne_lsl()


def test_help_lists_stream_without_loading_it():
    from click.testing import CliRunner

    from eeg2img_deploy.cli import cli

    sys.modules.pop("eeg2img_deploy.stream.reconstructor", None)
    result = CliRunner().invoke(cli, ["stream", "--help"])
    assert result.exit_code == 0 and "--replay" in result.output and "--view" in result.output
    assert "eeg2img_deploy.stream.reconstructor" not in sys.modules  # --help imports click and stdlib only
