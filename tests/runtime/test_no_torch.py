"""The runtime and the CLI's help work where torch, diffusers, transformers and onnx cannot be imported.

Each check runs in a fresh interpreter whose first act is to install a meta-path finder that refuses
those packages, as on a deployment machine that has only numpy + onnxruntime.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from support import import_blocker

BLOCKED = ("torch", "diffusers", "transformers", "onnx", "onnxscript", "accelerate", "tensorrt")

BLOCKER = import_blocker(BLOCKED)


def run_blocked(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(code), *args],
        check=False, capture_output=True, text=True, timeout=120,
    )


def test_blocker_blocks():
    proc = run_blocked("import torch")
    assert proc.returncode != 0 and "blocked by the test" in proc.stderr
    assert run_blocked("import onnxruntime, numpy").returncode == 0, "onnxruntime must stay importable"


def test_runtime_inference_without_torch(tiny_bundle, tiny_dir):
    code = """
        import json, sys
        import numpy as np
        from eeg2img_deploy.runtime.pipeline import Pipeline

        eeg = np.load(sys.argv[2])[:2]
        pipe = Pipeline.from_bundle(sys.argv[1], low_level=True)
        res = pipe(eeg, 8, 0, prior_steps=3)
        low = pipe(eeg, 8, 0, prior_steps=3, steps=4, low_level=True, strength=0.5)  # the low-level path too
        loaded = sorted({m.split(".")[0] for m in sys.modules} & set(BLOCKED))
        print(json.dumps({"shape": list(res.images.shape), "dtype": str(res.images.dtype),
                          "std": float(res.images.std()), "low_std": float(low.images.std()), "loaded": loaded}))
    """
    proc = run_blocked(code, str(tiny_bundle), str(tiny_dir / "eeg" / "synthetic_eeg.npy"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["shape"] == [2, 128, 128, 3] and out["dtype"] == "uint8"
    assert out["std"] > 5 and out["low_std"] > 5, "the images are not blank"
    assert out["loaded"] == []


def test_captions_and_prompts_without_torch(tiny_bundle, tiny_dir):
    code = """
        import json, sys
        import numpy as np
        from eeg2img_deploy.runtime.pipeline import Pipeline

        pipe = Pipeline.from_bundle(sys.argv[1])
        res = pipe(np.load(sys.argv[2])[:2], 8, 0, prior_steps=3, prompt_from_caption=True)
        loaded = sorted({m.split(".")[0] for m in sys.modules} & set(BLOCKED))
        print(json.dumps({"captions": res.captions, "loaded": loaded, "tokenizers": "tokenizers" in sys.modules}))
    """
    proc = run_blocked(code, str(tiny_bundle), str(tiny_dir / "eeg" / "synthetic_eeg.npy"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(out["captions"]) == 2 and all(out["captions"]) and out["loaded"] == [] and out["tokenizers"]


CLI = """
    import sys
    sys.argv = ["eeg2img-deploy", *sys.argv[1:]]
    from eeg2img_deploy.cli import main
    main()
"""


def test_cli_help_without_torch():
    proc = run_blocked(CLI, "--help")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for command in ("init-tiny", "reference", "export", "build-engines", "infer"):
        assert command in proc.stdout, command


@pytest.mark.parametrize("command, option", [("infer", "--shared-subject-token"), ("build-engines", "--backend"),
                                             ("export", "--image-size")])
def test_command_help_without_torch(command, option):
    proc = run_blocked(CLI, command, "--help")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert option in proc.stdout
