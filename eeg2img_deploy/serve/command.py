"""CLI: ``serve`` (PyTriton), ``client`` (tritonclient) and ``triton-repo`` (a model repository for tritonserver)."""

from __future__ import annotations

from pathlib import Path

import click

from ..cli_options import (
    OUT_FOLDER,
    Range,
    RunOptions,
    RuntimeOptions,
    eeg_options,
    number,
    run_options,
    runtime_options,
    verify_option,
)

PORT = click.IntRange(1, 65535)


def _url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from .client import parse_url

    return parse_url(value)  # its OptionError names --url: one line, exit 2, before any connection


@click.command()
@click.option("--bundle", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Export bundle or engine folder.")
@runtime_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0: every interface).")
@click.option("--http-port", type=PORT, default=8000, show_default=True,
              help="Port of Triton's HTTP/REST endpoint (KServe v2; what `client --url` takes).")
@click.option("--grpc-port", type=PORT, default=8001, show_default=True,
              help="Port of Triton's gRPC endpoint.")
@click.option("--metrics-port", type=PORT, default=8002, show_default=True,
              help="Port of Triton's Prometheus metrics.")
@click.option("--max-batch", type=click.IntRange(1), default=None,
              help="Largest dynamic batch [default: the bundle's max_batch].")
@click.option("--queue-delay-us", type=click.IntRange(0), default=2000, show_default=True,
              help="How long the dynamic batcher waits to fill a batch.")
@click.option("--instances", type=click.IntRange(1), default=1, show_default=True,
              help="Model instances (each its own pipeline) running concurrently.")
@click.option("--drain-timeout", type=click.IntRange(0), default=30, show_default=True,
              help="Seconds in-flight requests may take to finish on Ctrl-C/SIGTERM.")
@run_options("shared_subject_token")
def serve(bundle: Path, runtime: RuntimeOptions, host: str, http_port: int, grpc_port: int, metrics_port: int,
          max_batch: int | None, queue_delay_us: int, instances: int, drain_timeout: int, run: RunOptions) -> None:
    """Serve the runtime behind Triton Inference Server (PyTriton) as model `eeg2img`; Ctrl-C drains and stops.

    Readiness probe: GET /v2/health/ready (200 once the model is loaded); liveness: GET /v2/health/live.
    """
    from .server import ServeSettings, serve as run_server

    def open_pipeline():
        return runtime.open(bundle)

    settings = ServeSettings(host=host, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
                             max_batch=max_batch, queue_delay_us=queue_delay_us, instances=instances,
                             drain_timeout_s=drain_timeout)
    run_server(bundle, settings, open_pipeline=open_pipeline, run=run,
               on_ready=lambda: click.echo(f"ready: http://{host}:{http_port} grpc {host}:{grpc_port} model eeg2img "
                                           "(readiness probe: /v2/health/ready; Ctrl-C to stop)", err=True))
    click.echo("stopped", err=True)


@click.command()
@click.option("--url", required=True, callback=_url,
              help="Triton HTTP endpoint, host:port (e.g. localhost:8000).")
@eeg_options(whitening="client")
@click.option("--out", required=True, type=OUT_FOLDER, help="Output folder.")
@click.option("--overwrite", is_flag=True, help="Replace the images and result.json of an earlier run in --out.")
@run_options("seed", "steps", "prior_steps", "ip_scale", defaults_from="the server's")
@click.option("--concurrency", type=click.IntRange(1), default=1, show_default=True,
              help="Requests in flight at once (load generator with --requests).")
@click.option("--requests", "n_requests", type=click.IntRange(1), default=None,
              help="Requests to send, round-robin over the trials [default: one per trial].")
@click.option("--model", default="eeg2img", show_default=True, help="Model name on the server.")
@click.option("--encoder-channels", type=click.Path(dir_okay=False, path_type=Path),
              help="The served encoder's EEG channels: the --encoder-channels file its bundle was exported with "
                   "[default: the paper's 63].")
@number("--timeout", rule=Range(0, lo_open=True), default=120.0, show_default=True, help="Seconds per request.")
@number("--wait", rule=Range(0), default=60.0, show_default=True,
        help="Seconds to wait for the server and model to become ready (one just started).")
def client(url: str, out: Path, overwrite: bool, run: RunOptions, concurrency: int, n_requests: int | None, model: str,
           encoder_channels: Path | None, timeout: float, wait: float, **kw) -> None:
    """Send EEG trials to a served model; write PNGs + result.json (with latency p50/p99 and throughput)."""
    from rich.progress import Progress

    from types import SimpleNamespace

    from ..cli_options import read_eeg, whiten_if_asked
    from ..errors import ServingError
    from ..runtime.images import ImageWriter
    from .client import Client, run_trials, served_spec

    writer = ImageWriter(out, overwrite=overwrite)  # refuses a used folder before any request
    conn = Client(url, model=model, timeout_s=timeout)
    conn.check_ready(wait_s=wait, on_wait=lambda message: click.echo(message, err=True))
    spec = served_spec(conn.eeg_shape(), encoder_channels, model)  # the served encoder's channels and samples
    eeg, ids = read_eeg(kw, spec)
    eeg = whiten_if_asked(eeg, kw, spec)  # here, before sending: the server only knows its bundle's matrix
    total = n_requests or len(eeg)
    with Progress(transient=True) as bar:
        task = bar.add_task("requests", total=total)
        answers, report = run_trials(conn, eeg, int(ids[0]), run, concurrency=concurrency, requests=total,
                                     progress=lambda: bar.advance(task))
    load = report.summary()
    if len(answers) < len(eeg):
        raise ServingError(f"{load['errors']} of {total} requests failed; first: {report.errors[0]}")
    import numpy as np

    result = SimpleNamespace(images=np.stack([a.image for a in answers]),
                             eeg_embeds=np.stack([a.eeg_embeds for a in answers]),
                             image_embeds=np.stack([a.image_embeds for a in answers]))
    writer.write(result, {
        "command": "client", "url": url, "model": model, "seed": run.seed, "steps": run.steps,
        "prior_steps": run.prior_steps, "ip_scale": run.ip_scale, "subject_ids": ids.tolist(), "timings_ms": [a.timings_ms for a in answers], "load": load,
    })
    lat = load["latency_ms"]
    click.echo(f"{total} request(s), concurrency {concurrency}: p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, "
               f"{load['throughput_rps']:.2f} req/s, errors {load['errors']}, batch sizes {load['server_batch_sizes']}")
    click.echo(writer.summary(len(answers)))
    if report.errors or report.mismatches:
        raise ServingError(f"{load['errors']} request(s) failed and {load['mismatches']} answer(s) differed from the "
                           f"first for their trial; first error: {(report.errors or ['-'])[0]}")


@click.command("triton-repo")
@click.option("--bundle", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Export bundle or engine folder.")
@click.option("--out", required=True, type=OUT_FOLDER,
              help="Repository folder to write (new or empty).")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default=None,
              help="Default: fp16 on GPU instances, fp32 on CPU ones (fp32-only stages stay fp32).")
@click.option("--vae", type=click.Choice(["full", "tiny"]), default="full", show_default=True,
              help="Latent decoder: SDXL's VAE (full) or TAESDXL (tiny).")
@click.option("--kind", type=click.Choice(["auto", "gpu", "cpu"]), default="auto", show_default=True,
              help="Stage instances: auto = GPU for TensorRT plans and CUDA/TensorRT onnxruntime folders.")
@click.option("--instances", type=click.IntRange(1), default=1, show_default=True, help="Instances per stage model.")
@click.option("--max-batch", type=click.IntRange(1), default=None, help="eeg2img's max batch [default: the bundle's].")
@click.option("--queue-delay-us", type=click.IntRange(0), default=2000, show_default=True,
              help="How long eeg2img's dynamic batcher waits to fill a batch.")
@click.option("--stage-backend", type=click.Choice(["native", "python"]), default="native", show_default=True,
              help="python: stages as Python-backend onnxruntime models (servers without the onnxruntime backend).")
@verify_option()
def triton_repo(bundle: Path, out: Path, precision: str | None, vae: str, kind: str, instances: int,
                max_batch: int | None, queue_delay_us: int, stage_backend: str, verify: bool) -> None:
    """Write a Triton model repository (one model per stage + the eeg2img model) for `tritonserver`."""
    from .triton_repo import RepoSettings, write_repository

    settings = RepoSettings(precision=precision, vae=vae, instances=instances, kind=kind, max_batch=max_batch,
                            queue_delay_us=queue_delay_us, stage_backend=stage_backend, verify=verify)
    configs = write_repository(bundle, out, settings)
    for name, cfg in configs.items():
        click.echo(f"  {name:<14} {cfg.get('platform') or cfg['backend']:<17} max batch {cfg['max_batch_size']}")
    click.echo(f"repository in {out}: tritonserver --model-repository {out}")
