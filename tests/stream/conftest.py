"""Live-input fixtures: a bundle whose whitening expects volts, and a pylsl amplifier (``live_support``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from live_support import W_VOLTS, Amplifier


@pytest.fixture(scope="session")
def volts_bundle(tiny_bundle, tmp_path_factory) -> Path:
    """The tiny bundle shipping a whitening matrix fitted to EEG in volts."""
    from support import bundle_with_whitening

    return bundle_with_whitening(tiny_bundle, tmp_path_factory.mktemp("volts") / "bundle", W_VOLTS)


@pytest.fixture
def amplifier():
    pytest.importorskip("pylsl")
    started: list[Amplifier] = []

    def start(data: Path, name: str, *args: str) -> Amplifier:
        started.append(Amplifier(data, name, *args))
        return started[-1]

    yield start
    for a in started:
        a.kill()
