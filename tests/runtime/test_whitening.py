"""Bug 11: whitening happens in one place (the runtime), once; a bundle's matrix plus --whitening is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from eeg2img_deploy.cli import cli
from eeg2img_deploy.errors import EEGInputError

RNG = np.random.default_rng(3)
W = np.eye(63) + 0.05 * RNG.standard_normal((63, 63))


@pytest.fixture(scope="module")
def whitened_bundle(tiny_bundle, tmp_path_factory) -> Path:
    """The tiny bundle with W shipped in its constants (as `export --whitening W` writes it)."""
    from support import bundle_with_whitening

    return bundle_with_whitening(tiny_bundle, tmp_path_factory.mktemp("whitened") / "bundle", W)


def test_shipped_matrix_equals_given_matrix(tiny_bundle, whitened_bundle, tiny_eeg):
    from eeg2img_deploy.runtime.pipeline import Pipeline

    eeg = tiny_eeg[:2]
    shipped = Pipeline.from_bundle(whitened_bundle)(eeg, 8, 0, prior_steps=2)
    given = Pipeline.from_bundle(tiny_bundle, whitening=W.astype(np.float32))(eeg, 8, 0, prior_steps=2)
    plain = Pipeline.from_bundle(tiny_bundle)(eeg, 8, 0, prior_steps=2)
    np.testing.assert_allclose(shipped.eeg_embeds, given.eeg_embeds, rtol=1e-5, atol=1e-5)
    # Whitening once moves the embedding far more than that tolerance (the check can fail).
    assert np.abs(shipped.eeg_embeds - plain.eeg_embeds).max() > 1e-2


def test_both_at_once_refused(whitened_bundle):
    from eeg2img_deploy.runtime.pipeline import Pipeline

    with pytest.raises(EEGInputError, match="ships a whitening matrix.*drop --whitening"):
        Pipeline.from_bundle(whitened_bundle, whitening=W)


def test_infer_whitening_on_a_whitened_bundle_exits_2(whitened_bundle, tiny_eeg, tmp_path, monkeypatch, capsys):
    # Before: the reader whitened and the pipeline whitened again, exit 0.
    from eeg2img_deploy.cli import main

    np.save(tmp_path / "eeg.npy", tiny_eeg[:1])
    np.save(tmp_path / "w.npy", W)
    out = tmp_path / "out"
    monkeypatch.setattr("sys.argv", ["eeg2img-deploy", "infer", "--bundle", str(whitened_bundle), "--eeg",
                                     str(tmp_path / "eeg.npy"), "--subject", "8", "--out", str(out),
                                     "--prior-steps", "2", "--whitening", str(tmp_path / "w.npy")])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and "drop --whitening" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_infer_whitening_applied_once(tiny_bundle, tiny_eeg, tmp_path):
    import json

    np.save(tmp_path / "eeg.npy", tiny_eeg[:1])
    np.save(tmp_path / "w.npy", W)
    args = ["infer", "--bundle", str(tiny_bundle), "--eeg", str(tmp_path / "eeg.npy"), "--subject", "8", "--prior-steps", "2"]
    r1 = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "a"), "--whitening", str(tmp_path / "w.npy")])
    assert r1.exit_code == 0, r1.output
    np.save(tmp_path / "pre.npy", np.einsum("ij,njt->nit", W, tiny_eeg[:1].astype(np.float64)).astype(np.float32))
    args[4] = str(tmp_path / "pre.npy")
    r2 = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "b")])
    assert r2.exit_code == 0, r2.output
    a, b = (json.loads((tmp_path / d / "result.json").read_text())["eeg_embeds"] for d in "ab")
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
