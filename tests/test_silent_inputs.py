"""Inputs that were accepted silently now say what they do (issue 23): a negative --guidance inverts the EEG
condition; a prompt over CLIP's 77 tokens is cut. Each is said once per process, not once per trial."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from support import run_main

LONG_PROMPT = "a photograph of " + "a small grey stone " * 20  # the tiny tokenizer: a token per character


@pytest.fixture(autouse=True)
def _forget_what_was_said(monkeypatch):
    from eeg2img_deploy import checks

    monkeypatch.setattr(checks, "_said", set())


def test_negative_guidance_and_long_prompt_are_said_once(monkeypatch, capsys, tmp_path, tiny_bundle, tiny_eeg):
    eeg = tmp_path / "eeg.npy"
    np.save(eeg, tiny_eeg[:2])
    args = ["infer", "--bundle", tiny_bundle, "--eeg", eeg, "--subject", "8", "--out", tmp_path / "out",
            "--prior-steps", "2", "--guidance", "-5", "--prompt", LONG_PROMPT]
    code, _, err = run_main(monkeypatch, capsys, args)
    assert code == 0, err
    assert err.count("--guidance -5 is negative: it inverts the EEG condition") == 1, err
    assert err.count("is longer than the 77 tokens") == 1 and "only its first 75 tokens are used" in err, err


def test_quiet_for_what_is_ordinary(monkeypatch, capsys, tmp_path, tiny_bundle, tiny_eeg, caplog):
    from eeg2img_deploy.runtime.pipeline import Pipeline

    pipe = Pipeline.from_bundle(tiny_bundle)
    with caplog.at_level(logging.WARNING):
        pipe(tiny_eeg[:1], 8, prior_steps=2, guidance=0.0, prompt="x" * 75)  # 77 with BOS/EOS
    pipe.close()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_reference_says_the_prompt_was_cut(reference_pipe, caplog):
    from eeg2img_deploy.models.sdxl import encode_prompts

    with caplog.at_level(logging.WARNING, logger="eeg2img_deploy"):
        encode_prompts(reference_pipe.sdxl, [LONG_PROMPT, LONG_PROMPT])
    assert sum("is longer than the 77 tokens" in r.getMessage() for r in caplog.records) == 1, caplog.text
