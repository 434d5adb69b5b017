"""A normal run shows no known-harmless third-party notes (``eeg2img_deploy/quiet.py``), and real warnings still show."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from eeg2img_deploy import quiet as q
from support import TEST_IMAGE_SIZE

LIBRARY_LOGGERS = ("diffusers", "transformers", "torch")
# What each note printed before it was dropped at its source (the first words of each message).
KNOWN_TEXTS = ("requires torchvision (not installed)", "image_encoder is not loaded", "should be kept in float32",
               "were passed to AutoencoderTiny, but are not expected", "Skipping torchvision::",
               "Loading pipeline components", "Loading weights", "Writing model shards",
               *(n.text for n in q.ONNX_EXPORT))


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


@pytest.fixture
def library_records():
    """Every WARNING the libraries' loggers emit during the test (they do not propagate to the root)."""
    handler = _Records()
    loggers = [logging.getLogger(name) for name in LIBRARY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.WARNING)
    yield handler.messages
    for lg, level in zip(loggers, levels):
        lg.removeHandler(handler)
        lg.setLevel(level)


@pytest.mark.slow
def test_reference_run_prints_nothing_on_stderr(tiny_dir, tmp_path):
    """The CLI as a user runs it, in a fresh interpreter (import-time notes included): nothing on stderr.

    Before: 26 lines of notes and 27 of progress bars per run of the README's job (init-tiny's TAESD
    config, the torchvision fallback, the IP-Adapter's image encoder, fp32 casts, loading bars)."""
    proc = subprocess.run(
        [sys.executable, "-m", "eeg2img_deploy.cli", "reference", "--weights", str(tiny_dir), "--eeg",
         str(tiny_dir / "eeg" / "synthetic_eeg.npy"), "--subject", "8", "--out", str(tmp_path / "ref"),
         "--low-level", "--steps", "4", "--strength", "0.5", "--image-size", str(TEST_IMAGE_SIZE)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "ref" / "image_000.png").is_file()
    assert not [t for t in KNOWN_TEXTS if t in proc.stderr], proc.stderr[-3000:]
    assert proc.stderr == "", proc.stderr[-3000:]


def _export(stage, tmp_path, precision="fp32"):
    from eeg2img_deploy.export.onnx_io import export_onnx
    from eeg2img_deploy.manifest import Precision

    export_onnx(stage, Precision(precision), tmp_path / f"{stage.file_stem}.onnx", stage.make_inputs(2, np.random.default_rng(0)))


def test_export_records_no_known_notes(reference_pipe, tiny_export_settings, tmp_path, library_records):
    """The stages whose tracing warned most (diffusers' UNet, transformers' text encoders and GIT decoder)."""
    pytest.importorskip("onnx")
    from eeg2img_deploy.export.bundle import build_stages

    stages = {s.name: s for s in build_stages(reference_pipe, tiny_export_settings)}
    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        for name in ("unet", "text_encoders", "caption_decoder"):
            _export(stages[name], tmp_path)
    assert [f"{w.category.__name__}: {w.message}" for w in recorded] == []
    assert library_records == []


def test_real_warnings_still_show_through_export(tmp_path, library_records, caplog):
    """A warning the notes do not name, ours or a library's, gets through the same export call."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from eeg2img_deploy.export.spec import StageExport
    from eeg2img_deploy.manifest import TensorSpec

    class Warns(torch.nn.Module):
        def forward(self, x):
            warnings.warn("a real problem in this model", UserWarning)
            warnings.warn("You are using the legacy TorchScript-based ONNX export", DeprecationWarning)  # dropped
            logging.getLogger("eeg2img_deploy.export").warning("a note of ours")
            logging.getLogger("diffusers.models.modeling_utils").warning("a real diffusers warning")
            return x * 2

    stage = StageExport("warns", Warns(), (TensorSpec("x", "float32", ("batch", 3)),),
                        (TensorSpec("y", "float32", ("batch", 3)),),
                        make_inputs=lambda b, rng: {"x": rng.standard_normal((b, 3), dtype=np.float32)})
    with warnings.catch_warnings(record=True) as recorded, caplog.at_level(logging.WARNING, "eeg2img_deploy"):
        warnings.simplefilter("always")
        _export(stage, tmp_path)
    messages = [str(w.message) for w in recorded]
    assert "a real problem in this model" in messages
    assert not [m for m in messages if m.startswith("You are using the legacy")]
    assert "a note of ours" in caplog.messages
    assert "diffusers.models.modeling_utils: a real diffusers warning" in library_records


def test_log_notes_are_dropped_only_inside_the_block_and_only_as_named(library_records):
    logger = logging.getLogger(q.NOTHING_KEPT_IN_FP32.logger)
    empty = "There are modules in UNet2DConditionModel that should be kept in float32: []. Casting ..."
    named = "There are modules in UNet2DConditionModel that should be kept in float32: ['norm']. Casting ..."
    with q.quiet(q.NOTHING_KEPT_IN_FP32, q.NO_IMAGE_ENCODER):
        logger.warning(empty)
        logger.warning(named)
        logging.getLogger("diffusers.loaders.ip_adapter").warning("another ip_adapter warning")
    logger.warning(empty)
    assert library_records == [f"{logger.name}: {named}", "diffusers.loaders.ip_adapter: another ip_adapter warning",
                               f"{logger.name}: {empty}"]


@pytest.mark.parametrize("verbose, shown", [(False, False), (True, True)])
def test_library_progress_bars_show_with_v_only_and_are_restored(verbose, shown):
    diffusers_logging = pytest.importorskip("diffusers.utils.logging")
    transformers_logging = pytest.importorskip("transformers.utils.logging")
    ours = logging.getLogger("eeg2img_deploy")
    level = ours.level
    ours.setLevel(logging.INFO if verbose else logging.WARNING)
    try:
        before = (diffusers_logging.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled())
        with q.quiet(bars=True):
            assert diffusers_logging.is_progress_bar_enabled() is shown
            assert transformers_logging.is_progress_bar_enabled() is shown
        assert (diffusers_logging.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled()) == before
    finally:
        ours.setLevel(level)


def test_tiny_taesd_config_has_no_unused_keys(tiny_dir):
    """diffusers warned on every load: AutoencoderTiny takes no ``block_out_channels`` (madebyollin/taesdxl has none)."""
    import inspect
    import json

    from diffusers import AutoencoderTiny

    config = json.loads((tiny_dir / "taesdxl" / "config.json").read_text())
    accepted = set(inspect.signature(AutoencoderTiny.__init__).parameters)
    assert {k for k in config if not k.startswith("_")} <= accepted


LSL_PROBE = "from eeg2img_deploy.stream.lsl import import_mne_lsl; import_mne_lsl().lsl.resolve_streams(timeout=0.2)"


@pytest.mark.parametrize("user_config", [False, True], ids=["no-config", "users-config"])
def test_liblsl_logs_info_only_under_a_users_own_config(tmp_path, user_config):
    """liblsl's INFO lines ("Loaded default config", its version) are gone; a lab's lsl_api.cfg is never replaced."""
    pytest.importorskip("mne_lsl")
    import os

    from eeg2img_deploy.stream.lsl import LSL_CONFIG_FILES

    if Path(LSL_CONFIG_FILES[-1]).is_file():
        pytest.skip(f"this machine has {LSL_CONFIG_FILES[-1]}")
    env = {k: v for k, v in os.environ.items() if k != "LSLAPICFG"} | {"HOME": str(tmp_path)}
    if user_config:
        (tmp_path / "mine.cfg").write_text("[log]\nlevel = 0\n")
        env["LSLAPICFG"] = str(tmp_path / "mine.cfg")
    proc = subprocess.run([sys.executable, "-c", LSL_PROBE], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    if user_config:
        assert "INFO| Configuration loaded from" in proc.stderr and "mine.cfg" in proc.stderr
    else:
        assert proc.stderr == ""
