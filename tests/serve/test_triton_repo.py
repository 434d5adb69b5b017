"""``triton-repo``: every config.pbtxt parses with Triton's ModelConfig and matches the manifest; the
repository runs on PyTriton's bundled tritonserver (Python-backend stages, CPU) and answers what ``infer`` does.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from eeg2img_deploy.errors import ManifestError
from eeg2img_deploy.manifest import Backend, read_manifest, write_manifest

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")

TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "uint8": "TYPE_UINT8"}
SUBJECT = 8


def parse(path: Path):
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _write(bundle, out, **kw):
    from eeg2img_deploy.serve.triton_repo import RepoSettings, write_repository

    return write_repository(bundle, out, RepoSettings(**kw))


def _check_against_manifest(repo: Path, manifest, precision_of):
    axes = manifest.bundle.axes
    for stage in ("encoder", "prior", "unet", "vae_decoder"):
        cfg = parse(repo / stage / "config.pbtxt")
        a = manifest.artifact(stage, precision_of(stage))
        assert cfg.name == stage
        assert cfg.max_batch_size == axes[a.inputs[0].shape[0]].max
        for specs, ios in ((a.inputs, cfg.input), (a.outputs, cfg.output)):
            assert [t.name for t in specs] == [io.name for io in ios]
            for t, io in zip(specs, ios):
                assert model_config_pb2.DataType.Name(io.data_type) == TYPES[t.dtype], (stage, t.name)
                model_dims = list(io.reshape.shape) if io.HasField("reshape") else list(io.dims)
                assert model_dims == list(t.shape[1:]), (stage, t.name)
        assert cfg.HasField("dynamic_batching") and cfg.instance_group[0].count == 1


def test_onnx_repository_parses_and_matches_the_manifest(tiny_bundle, tmp_path):
    configs = _write(tiny_bundle, tmp_path / "repo")
    manifest = read_manifest(tiny_bundle)
    assert {"encoder", "prior", "unet", "vae_decoder", "eeg2img"} <= set(configs)
    fused = [n for n in configs if n.startswith("prior_sampler_")]
    assert all(configs[n]["max_batch_size"] == 4 for n in fused)
    _check_against_manifest(tmp_path / "repo", manifest, lambda s: "fp32")
    enc = parse(tmp_path / "repo" / "encoder" / "config.pbtxt")
    assert enc.platform == "onnxruntime_onnx" and enc.instance_group[0].kind == enc.instance_group[0].KIND_CPU
    assert (tmp_path / "repo" / "encoder" / "1" / "model.onnx").read_bytes() == (tiny_bundle / "encoder.onnx").read_bytes()
    top = parse(tmp_path / "repo" / "eeg2img" / "config.pbtxt")
    assert top.backend == "python" and top.max_batch_size == 4
    ins = {i.name: (list(i.dims), i.optional) for i in top.input}
    assert ins["eeg"] == ([63, 250], False) and ins["seed"] == ([1], False) and ins["prior_steps"] == ([1], True)
    assert {o.name: list(o.dims) for o in top.output}["image"] == [128, 128, 3]
    assert (tmp_path / "repo" / "eeg2img" / "1" / "model.py").is_file()
    readme = (tmp_path / "repo" / "README.md").read_text()
    assert "tritonserver --model-repository" in readme
    assert "| `encoder` | onnxruntime_onnx | fp32 |" in readme  # the stage table (once replaced by the batch size)


def test_tensorrt_folder_gets_plans_on_gpu_instances(tiny_bundle, tmp_path):
    """An engine folder of TensorRT plans (here the bundle relabelled: triton-repo only copies files)."""
    folder = tmp_path / "engines"
    shutil.copytree(tiny_bundle, folder)
    manifest = read_manifest(folder)
    write_manifest(folder, dataclasses.replace(manifest, backend=Backend.TENSORRT))
    _write(folder, tmp_path / "repo", instances=2)
    unet = parse(tmp_path / "repo" / "unet" / "config.pbtxt")
    assert unet.platform == "tensorrt_plan" and unet.default_model_filename == "model.plan"
    assert unet.instance_group[0].kind == unet.instance_group[0].KIND_GPU and unet.instance_group[0].count == 2
    assert (tmp_path / "repo" / "unet" / "1" / "model.plan").read_bytes() == (folder / "unet.fp16.onnx").read_bytes()
    repo_manifest = read_manifest(tmp_path / "repo" / "eeg2img" / "1")
    assert repo_manifest.backend is Backend.TENSORRT
    fp32_only = set(manifest.bundle.fp32_only_stages)
    for stage in ("encoder", "prior", "unet", "vae_decoder"):  # fp16 where the folder has it
        cfg = parse(tmp_path / "repo" / stage / "config.pbtxt")
        a = manifest.artifact(stage, "fp32" if stage in fp32_only else "fp16")
        assert [TYPES[t.dtype] for t in a.inputs] == [model_config_pb2.DataType.Name(i.data_type) for i in cfg.input]


def _static_engines(tiny_bundle, folder, rows: int):
    """The bundle relabelled as static TensorRT engines at ``rows`` (jetson-orin --max-batch ROWS)."""
    from eeg2img_deploy.manifest import AxisRange, EngineSettings, TensorRTSettings

    shutil.copytree(tiny_bundle, folder)
    m = read_manifest(folder)
    axes = {"batch": AxisRange(rows, rows, rows), "batch2": AxisRange(2 * rows, 2 * rows, 2 * rows)}
    write_manifest(folder, dataclasses.replace(m, backend=Backend.TENSORRT, bundle=dataclasses.replace(m.bundle, axes=axes, max_batch=rows),
                                               engine=EngineSettings(tensorrt=TensorRTSettings("jetson-orin", static_shapes=True))))  # fmt: skip
    return folder


def test_static_engines_get_no_dynamic_batcher_and_no_ensembles(tiny_bundle, tmp_path):
    """Triton's dynamic batcher sends partial batches after its queue delay: outside a static engine's profile.
    Old code batched every stage dynamically and wired ensembles that pass the client's batch through."""
    for rows in (3, 1):
        folder = _static_engines(tiny_bundle, tmp_path / f"engines{rows}", rows)
        configs = _write(folder, tmp_path / f"repo{rows}")
        for stage in ("encoder", "prior", "unet", "vae_decoder"):
            text = (tmp_path / f"repo{rows}" / stage / "config.pbtxt").read_text()
            cfg = parse(tmp_path / f"repo{rows}" / stage / "config.pbtxt")
            assert not cfg.HasField("dynamic_batching") and "# static TensorRT engine" in text, stage
            assert cfg.max_batch_size == (2 * rows if stage == "prior" else rows)
        assert any(n.startswith("eeg2img_fused_") for n in configs) == (rows == 1)


def test_calls_to_a_static_engine_are_padded_and_cut():
    """Each tensor along its own batch axis: the caption's KV cache carries it second ((2 * layers, B, ...))."""
    from eeg2img_deploy.manifest import AxisRange, TensorSpec
    from eeg2img_deploy.serve.requests import cut_padding, pad_to_static

    specs = (TensorSpec("x", "float32", ("batch2", 2)), TensorSpec("t", "float32", ("batch2",)), TensorSpec("k", "float32", (3,)),
             TensorSpec("kv", "float32", (2, "batch2", "past")))  # fmt: skip
    x = np.arange(8, dtype=np.float32).reshape(4, 2)
    kv = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5)
    feeds, real, padded = pad_to_static({"x": x, "t": x[:, 0], "k": np.ones(3, np.float32), "kv": kv}, specs,
                                        {"batch2": AxisRange(6, 6, 6)})  # fmt: skip
    assert (real, padded) == (4, 6) and feeds["x"].shape == (6, 2) and feeds["t"].shape == (6,) and feeds["k"].shape == (3,)
    assert feeds["kv"].shape == (2, 6, 5)  # axis 0 padded would be (4, 4, 5)
    np.testing.assert_array_equal(feeds["x"][4:], [x[-1], x[-1]])  # real rows repeated: no NaN from zeros
    np.testing.assert_array_equal(feeds["kv"][:, 4:], np.stack([kv[:, -1]] * 2, axis=1))
    cut = cut_padding({"x": feeds["x"] * 2, "kv": feeds["kv"] + 1}, specs[:1] + specs[3:], real, padded)
    np.testing.assert_array_equal(cut["x"], x * 2)
    np.testing.assert_array_equal(cut["kv"], kv + 1)


def test_a_misspelled_field_fails_the_parse():
    from eeg2img_deploy.serve.pbtxt import Enum, render

    good = render({"name": "m", "max_batch_size": 4, "instance_group": [{"count": 1, "kind": Enum("KIND_GPU")}]})
    parse_text = text_format.Parse
    parse_text(good, model_config_pb2.ModelConfig())
    with pytest.raises(text_format.ParseError):
        parse_text(good.replace("max_batch_size", "max_batch"), model_config_pb2.ModelConfig())
    with pytest.raises(text_format.ParseError):
        parse_text(good.replace("KIND_GPU", "KIND_GPUS"), model_config_pb2.ModelConfig())


def test_bad_settings_are_refused(tiny_bundle, tmp_path):
    from eeg2img_deploy.errors import ManifestError

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ManifestError, match="--out"):
        _write(tiny_bundle, tmp_path / "full")
    with pytest.raises(ManifestError, match="--vae"):
        _write(tiny_bundle, tmp_path / "r", vae="medium")


@pytest.fixture(scope="module")
def bundled_server(tiny_bundle, tmp_path_factory, triton_stub_loads):
    pytest.importorskip("pytriton")
    from eeg2img_deploy.serve.process import BundledTritonProcess

    work = tmp_path_factory.mktemp("triton-repo")
    _write(tiny_bundle, work / "repo", stage_backend="python")
    proc = BundledTritonProcess(work / "repo", work / "server", log_path=work / "tritonserver.log")
    try:
        proc.start()
    except Exception:
        print((work / "tritonserver.log").read_text(errors="replace")[-5000:])
        raise
    yield proc
    proc.stop()


def test_the_repository_runs_on_tritonserver_and_answers_what_infer_does(bundled_server, tiny_bundle, tiny_eeg):
    from eeg2img_deploy.runtime.pipeline import Pipeline
    from eeg2img_deploy.core.options import RunOptions
    from eeg2img_deploy.serve.client import Client, ServingError

    pipe = Pipeline.from_bundle(tiny_bundle, threads=1)
    want = {s: pipe(tiny_eeg, SUBJECT, s, prior_steps=4) for s in (0, 5)}
    client = Client(bundled_server.url, timeout_s=60)
    answers, errors = [], []

    def send(trial, seed, subject=SUBJECT):
        try:
            answers.append((trial, seed, client.infer(tiny_eeg[trial], subject, trial, RunOptions(seed, prior_steps=4))))
        except ServingError as e:
            errors.append(str(e))

    # six good requests and one bad one at once: the BLS model answers each request on its own
    jobs = [threading.Thread(target=send, args=(t % 4, (0, 5)[t % 2])) for t in range(6)]
    jobs.append(threading.Thread(target=send, args=(0, 0, 99)))
    for j in jobs:
        j.start()
    for j in jobs:
        j.join(timeout=120)
    assert len(errors) == 1 and "subject id(s) [99]" in errors[0], errors
    assert len(answers) == 6
    for trial, seed, a in answers:
        np.testing.assert_array_equal(a.image, want[seed].images[trial])
        np.testing.assert_allclose(a.image_embeds, want[seed].image_embeds[trial], rtol=0, atol=1e-6)


def _fused_steps(bundle) -> list[int]:
    steps = sorted(read_manifest(bundle).step_counts("prior_sampler"))
    if not steps:
        pytest.skip("this bundle has no fused prior graph (prior_sampler): no ensemble")
    return steps


@pytest.mark.parametrize("kind,precision", [("cpu", None), ("cpu", "fp16"), ("gpu", None), ("gpu", "fp32")])
def test_ensemble_wiring_is_consistent(tiny_bundle, tmp_path, kind, precision):
    """Every tensor an ensemble step reads is an ensemble input or an earlier step's output, same dtype and dims:
    both kinds, both precisions (fp16 is the GPU default; before float32 graph edges its ensembles mixed types)."""
    steps = _fused_steps(tiny_bundle)
    configs = _write(tiny_bundle, tmp_path / "repo", kind=kind, precision=precision)
    repo = tmp_path / "repo"
    parsed = {name: parse(repo / name / "config.pbtxt") for name in configs}
    for n in steps:
        ens = parsed[f"eeg2img_fused_{n}"]
        assert ens.platform == "ensemble" and (repo / ens.name / "1").is_dir()
        assert [s.model_name for s in ens.ensemble_scheduling.step] == [
            f"eeg2img_glue_inputs_{n}", "encoder", f"prior_sampler_{n}", "unet", "eeg2img_glue_step", "vae_decoder"]
        known = {i.name: (i.data_type, list(i.dims)) for i in ens.input}
        for step in ens.ensemble_scheduling.step:
            model = parsed[step.model_name]
            ins = {i.name: (i.data_type, list(i.dims)) for i in model.input}
            outs = {o.name: (o.data_type, list(o.dims)) for o in model.output}
            assert set(step.input_map) == set(ins), step.model_name  # every input fed
            for key, tensor_name in step.input_map.items():
                assert known[tensor_name] == ins[key], (step.model_name, key, tensor_name)
            for key, tensor_name in step.output_map.items():
                known[tensor_name] = outs[key]
        for o in ens.output:
            assert known[o.name] == (o.data_type, list(o.dims)), o.name


def test_a_folder_with_float16_edges_is_refused_in_one_line(tiny_bundle, tmp_path, monkeypatch, capsys):
    """A bundle exported before float32 graph edges: its fp16 ensemble would mix types, which Triton refuses at
    load; `triton-repo` says so in one line before writing anything (its fp32 repository still works)."""
    import re

    from support import float16_edges, run_main

    _fused_steps(tiny_bundle)
    old = tmp_path / "old"
    float16_edges(tiny_bundle, old)
    args = ["triton-repo", "--bundle", old, "--out", tmp_path / "repo", "--kind", "gpu"]
    code, out, err = run_main(monkeypatch, capsys, args)
    assert code == 2 and not out and len(err.strip().splitlines()) == 1, err
    assert re.search(r"eeg_embeds \(TYPE_FP16\) to prior_sampler_\d+'s cond \(TYPE_FP32\).*export it again", err), err
    assert not (tmp_path / "repo").exists() and not (tmp_path / "repo.partial").exists()
    _write(old, tmp_path / "repo", kind="cpu")  # fp32: one dtype per edge


def test_fused_ensemble_runs_on_tritonserver_with_infer_s_images(bundled_server, tiny_bundle, tiny_eeg):
    from eeg2img_deploy.runtime.pipeline import Pipeline
    from eeg2img_deploy.core.options import RunOptions
    from eeg2img_deploy.serve.client import Client

    pipe = Pipeline.from_bundle(tiny_bundle, threads=1)
    for n in _fused_steps(tiny_bundle):
        want = pipe(tiny_eeg[:2], SUBJECT, 7, prior_steps=n)
        client = Client(bundled_server.url, model=f"eeg2img_fused_{n}", timeout_s=60)
        for trial in (0, 1):
            a = client.infer(tiny_eeg[trial], SUBJECT, trial, RunOptions(seed=7))
            np.testing.assert_array_equal(a.image, want.images[trial])
            np.testing.assert_array_equal(a.image_embeds, want.image_embeds[trial])


@pytest.fixture(scope="module")
def gpu_kind_server(tiny_bundle, tmp_path_factory, triton_stub_loads):
    """The ``--kind gpu`` repository (fp16 where the bundle has it) loaded by PyTriton's tritonserver, so Triton's
    own loader checks it: configs, ensemble wiring, types and shapes. For this test only its GPU instance groups
    become CPU ones (no GPU here) and its stages run as Python-backend onnxruntime models (the bundled server has
    no onnxruntime backend); everything else is the repository as written."""
    from eeg2img_deploy.serve.process import BundledTritonProcess

    work = tmp_path_factory.mktemp("triton-repo-gpu")
    _write(tiny_bundle, work / "repo", kind="gpu", stage_backend="python")
    switched = 0
    for cfg in (work / "repo").glob("*/config.pbtxt"):
        text = cfg.read_text()
        switched += text.count("KIND_GPU")
        cfg.write_text(text.replace("KIND_GPU", "KIND_CPU"))
    assert switched >= 5  # every stage model: encoder, prior, unet, decoder, the fused priors
    proc = BundledTritonProcess(work / "repo", work / "server", log_path=work / "tritonserver.log")
    try:
        proc.start()
    except Exception:
        print((work / "tritonserver.log").read_text(errors="replace")[-5000:])  # Triton's reason, e.g. a type mismatch
        raise
    yield proc, work / "repo"
    proc.stop()


def test_triton_loads_the_gpu_repository_and_its_ensemble_gives_infer_s_fp16_images(gpu_kind_server, tiny_bundle,
                                                                                      tiny_eeg):
    import urllib.request

    from eeg2img_deploy.core.options import RunOptions
    from eeg2img_deploy.runtime.pipeline import Pipeline
    from eeg2img_deploy.serve.client import Client

    proc, repo = gpu_kind_server
    for model in sorted(p.parent.name for p in repo.glob("*/config.pbtxt")):
        with urllib.request.urlopen(f"http://{proc.url}/v2/models/{model}/ready", timeout=5) as r:
            assert r.status == 200, model
    n = min(_fused_steps(tiny_bundle))
    want = Pipeline.from_bundle(tiny_bundle, precision="fp16", threads=1)(tiny_eeg[:1], SUBJECT, 7, prior_steps=n)
    client = Client(proc.url, model=f"eeg2img_fused_{n}", timeout_s=60)
    got = client.infer(tiny_eeg[0], SUBJECT, 0, RunOptions(seed=7))
    np.testing.assert_array_equal(got.image, want.images[0])
    np.testing.assert_array_equal(got.image_embeds, want.image_embeds[0])


def test_a_kind_the_folder_was_not_built_for_is_refused(monkeypatch, capsys, ort_engines, tiny_bundle, tmp_path):
    """Before: ``--kind gpu`` on an engine folder optimized for the CPU provider wrote a repository silently."""
    from support import run_main

    folder, _ = ort_engines
    out = tmp_path / "repo"
    code, stdout, err = run_main(monkeypatch, capsys, ["triton-repo", "--bundle", folder, "--out", out, "--kind", "gpu"])
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--kind gpu" in err and "CPU provider" in err and "--kind cpu" in err and not out.exists()
    plans = tmp_path / "plans"
    shutil.copytree(tiny_bundle, plans)
    write_manifest(plans, dataclasses.replace(read_manifest(plans), backend=Backend.TENSORRT))
    with pytest.raises(ManifestError, match="--kind cpu: this folder holds TensorRT plans"):
        _write(plans, out, kind="cpu")
    assert _write(tiny_bundle, out, kind="gpu")  # a bundle runs on either
