"""Soak test of `eeg2img-deploy stream`: a replay at THINGS-EEG2's pace for minutes, on the tiny bundle.

    python benchmarks/stream_soak.py [--minutes 10] [--soa 0.2] [--bundle DIR] [--work DIR] [--out DIR]

A recording with one annotated stimulus every ``--soa`` seconds (63 channels, 500 Hz) is replayed by
``python -m eeg2img_deploy.stream.replay`` in one process, and ``eeg2img-deploy stream`` reads it over
LSL in another (as a lab would run them). While it runs, the stream process's RSS and the machine's load
are sampled every few seconds. At the end the stream is stopped with Ctrl-C (SIGINT) and its
``epochs.jsonl`` gives the stimulus-to-image latency (from the stimulus and from the end of each epoch
window, the latter per batch size and split into detection + epoching, queue + pipeline, writing),
throughput and drops. Without ``--bundle`` the tiny weights are written and exported
(128x128, fp32, 1 step) under ``--work``. ``--minutes 0.2`` is the suite's smoke run.

Writes ``stream_soak.json`` and its section of ``README.md`` under ``--out`` (only when ``--out`` is given
or the run is 10 minutes or longer: a short run is a smoke test, not a result).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

NAME = "stream_soak"
IMAGE_SIZE = 128
LEAD_IN_S = 2.0  # the replay's flat lead-in (its default)


def prepare_bundle(work: Path) -> Path:
    from eeg2img_deploy.export.bundle import ExportSettings, export_bundle
    from eeg2img_deploy.manifest import Precision
    from eeg2img_deploy.tiny import init_tiny
    from eeg2img_deploy.weights import resolve_weights

    weights = work / "tiny"
    if not (weights / "eeg").is_dir():
        init_tiny(weights, seed=0, image_size=IMAGE_SIZE)
    bundle = work / f"bundle-{IMAGE_SIZE}"
    settings = ExportSettings(image_size=IMAGE_SIZE, precisions=(Precision.FP32,), steps=(1,), max_batch=4)
    export_bundle(resolve_weights(weights), bundle, settings, progress=False)
    return bundle


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_soak(bundle: Path, work: Path, *, minutes: float, soa: float, prior_steps: int, sample_s: float) -> dict:
    from eeg2img_deploy.eeg.synthetic import LEAD_S, TAIL_S, write_tiny_recording
    from eeg2img_deploy.stream.output import read_epochs_jsonl

    n_stimuli = max(2, int(minutes * 60 / soa))
    rec = write_tiny_recording(work / "soak_raw.fif", n_stimuli=n_stimuli, soa_s=soa, sfreq=500.0, seed=7)
    name = f"soak-{uuid.uuid4().hex[:8]}"
    out = work / "stream-out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    stream_cmd = [sys.executable, "-m", "eeg2img_deploy.cli", "stream", "--bundle", str(bundle), "--subject", "8",
                  "--out", str(out), "--overwrite", "--source", name, "--event-stream", f"{name}-annotations",
                  "--reconnect-timeout", "60", "--prior-steps", str(prior_steps),
                  "--connect-timeout", "120"]  # the player starts after the stream looks: seconds under load
    err_path = work / "stream-stderr.txt"  # a file, not a pipe: a full pipe would block the stream's live line
    with open(err_path, "w") as err_file:  # the child keeps its own copy of the descriptor
        stream = subprocess.Popen(stream_cmd, stdout=subprocess.PIPE, stderr=err_file, text=True, env=env)
    # The player starts once the stream process is looking for it (imports take seconds; it waits up to
    # --connect-timeout for the player, whose start takes seconds more on a loaded machine): LSL
    # sends no history to a reader that connects late, and the replay's lead-in is short.
    deadline = time.monotonic() + 120
    while "looking for the LSL streams" not in err_path.read_text():
        if stream.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"stream did not start: {err_path.read_text()[-2000:]}")
        time.sleep(0.1)
    player = subprocess.Popen([sys.executable, "-m", "eeg2img_deploy.stream.replay", str(rec), "--name", name,
                               "--lead", str(LEAD_IN_S)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, env=env)
    samples: list[dict] = []
    t0 = time.monotonic()
    try:
        player.stdout.readline()  # the player is streaming
        t_play = time.monotonic()
        while player.poll() is None:
            if stream.poll() is not None:
                raise RuntimeError(f"stream exited early: {err_path.read_text()[-2000:]}")
            samples.append({"t_s": round(time.monotonic() - t_play, 1), "rss_mb": _rss_mb(stream.pid),
                            "load_1m": os.getloadavg()[0]})
            time.sleep(sample_s)
        time.sleep(3.0)  # the last windows complete and their images are written
        stream.send_signal(signal.SIGINT)
        stdout, _ = stream.communicate(timeout=60)
        stderr = err_path.read_text()
    finally:
        for p in (player, stream):
            if p.poll() is None:
                p.kill()
            p.wait()
            p.stdout.close()
    stdout, stderr = (text.replace(str(work), "<work>") for text in (stdout, stderr))  # no machine paths in results
    lines = read_epochs_jsonl(out / "epochs.jsonl")[1] if (out / "epochs.jsonl").exists() else []
    return summarize(lines, samples, n_stimuli=n_stimuli, soa=soa, duration_s=LEAD_S + (n_stimuli - 1) * soa + TAIL_S + LEAD_IN_S,
                     wall_s=time.monotonic() - t0, stdout=stdout, stderr=stderr, returncode=stream.returncode)


def _pct(values: list[float]) -> dict:
    if not values:
        return {}
    a = np.asarray(values)
    return {k: round(float(np.percentile(a, q)), 1) for k, q in (("p50", 50), ("p90", 90), ("p99", 99))} | {
        "min": round(float(a.min()), 1), "max": round(float(a.max()), 1), "n": len(a)}


def summarize(lines: list[dict], samples: list[dict], *, n_stimuli: int, soa: float, duration_s: float, wall_s: float,
              stdout: str, stderr: str, returncode: int) -> dict:
    rss = [(s["t_s"], s["rss_mb"]) for s in samples if s["rss_mb"] is not None]

    def slope(frac: float) -> float | None:  # MB/min over the last `frac` of the run
        part = [r for r in rss if r[0] >= rss[-1][0] * (1 - frac)] if rss else []
        return round(float(np.polyfit([t for t, _ in part], [m for _, m in part], 1)[0] * 60), 2) if len(part) >= 3 else None

    first_t = min((x["event_time"] for x in lines), default=0.0)
    last_t = max((x["image_written"] for x in lines), default=0.0)
    batches: dict[int, int] = {}
    for x in lines:
        batches[x["batch_size"]] = batches.get(x["batch_size"], 0) + 1
    ms = 1e3
    by_batch = {  # the closed loop's latency: from the end of the epoch window to the image, and where it goes
        str(b): {"epochs": n,
                 "from_window_end": _pct([x["latency_ms"]["from_window_end"] for x in lines if x["batch_size"] == b]),
                 "window_end_to_cut": _pct([(x["cut_time"] - x["window_end"]) * ms for x in lines if x["batch_size"] == b]),
                 "cut_to_image": _pct([(x["image_time"] - x["cut_time"]) * ms for x in lines if x["batch_size"] == b]),
                 "image_to_written": _pct([(x["image_written"] - x["image_time"]) * ms for x in lines
                                           if x["batch_size"] == b])}
        for b, n in sorted(batches.items())}
    return {
        "stimuli": n_stimuli, "soa_s": soa, "replay_s": round(duration_s, 1), "wall_s": round(wall_s, 1),
        "epochs": len(lines), "dropped": n_stimuli - len(lines),
        "stream_exit_code": returncode, "stream_summary": stdout.strip().splitlines()[-1:] or [],
        "stream_stderr_tail": stderr.strip().splitlines()[-3:],
        "latency_ms": {
            "from_stimulus": _pct([x["latency_ms"]["from_stimulus"] for x in lines]),
            "from_window_end": _pct([x["latency_ms"]["from_window_end"] for x in lines]),
        },
        "stages_ms_p50": {k: round(float(np.median([x["stages_ms"][k] for x in lines])), 1)
                          for k in (lines[0]["stages_ms"] if lines else {})},
        "epochs_by_batch_size": {str(k): v for k, v in sorted(batches.items())},
        "window_end_latency_by_batch_size": by_batch,
        "throughput_epochs_per_s": round(len(lines) / (last_t - first_t), 3) if last_t > first_t else None,
        "rss_mb": {"first": rss[0][1] if rss else None, "last": rss[-1][1] if rss else None,
                   "min": min(m for _, m in rss) if rss else None, "max": max(m for _, m in rss) if rss else None,
                   "slope_second_half_mb_per_min": slope(0.5), "slope_last_third_mb_per_min": slope(1 / 3)},
        "load_1m": _pct([s["load_1m"] for s in samples]),
        "samples": samples,
    }


def section(report: dict, name: str = NAME) -> str:
    from eeg2img_deploy.bench import setup_line

    m, r = report["machine"], report["result"]
    lat_s, lat_w, rss = r["latency_ms"]["from_stimulus"], r["latency_ms"]["from_window_end"], r["rss_mb"]
    return "\n".join([
        f"## Live stream soak, tiny bundle, CPU (`stream_soak.py`{', ' + name if name != NAME else ''})",
        "",
        setup_line(report["command"], m, report["versions"]),
        "",
        (f"{r['stimuli']} stimuli, one every {r['soa_s'] * 1000:.0f} ms (THINGS-EEG2's pace), replayed over LSL for "
         f"{r['replay_s'] / 60:.1f} min by a separate player process; `stream` on the tiny bundle ({IMAGE_SIZE}x{IMAGE_SIZE}, "
         f"fp32, onnxruntime CPU, {report['settings']['prior_steps']} prior steps, 1 UNet step, full VAE). "
         f"**Machine load during the run: 1-minute load average p50 {r['load_1m'].get('p50')}, max {r['load_1m'].get('max')} "
         f"on {m.get('usable_cores', m['logical_cores'])} cores** (other work shared the machine)."),
        "",
        "| latency, ms | p50 | p90 | p99 | max |",
        "|---|---|---|---|---|",
        f"| stimulus -> image written | {lat_s.get('p50')} | {lat_s.get('p90')} | {lat_s.get('p99')} | {lat_s.get('max')} |",
        f"| end of epoch window -> image written | {lat_w.get('p50')} | {lat_w.get('p90')} | {lat_w.get('p99')} | {lat_w.get('max')} |",
        "",
        "The closed loop's latency, from the end of the epoch window (the window itself is 1 s) to the image, by the "
        "batch the epoch was reconstructed in (epochs wait in a queue while the engines are busy, and go through "
        "together); `window end -> cut`: the stream noticing the window is complete and epoching it, `cut -> image`: "
        "the queue and the pipeline, `image -> written`: the PNG and its JSON line.",
        "",
        "| batch size | epochs | window end -> image p50 | p99 | window end -> cut p50 | cut -> image p50 | image -> written p50 |",
        "|---|---|---|---|---|---|---|",
        *[f"| {b} | {v['epochs']} | {v['from_window_end'].get('p50')} | {v['from_window_end'].get('p99')} | "
          f"{v['window_end_to_cut'].get('p50')} | {v['cut_to_image'].get('p50')} | {v['image_to_written'].get('p50')} |"
          for b, v in r.get("window_end_latency_by_batch_size", {}).items()],
        "",
        (f"- Epochs {r['epochs']} of {r['stimuli']} stimuli, dropped {r['dropped']}; throughput "
         f"{r['throughput_epochs_per_s']} epochs/s (stimuli arrive at {1 / r['soa_s']:.1f}/s); epochs by batch size "
         f"{r['epochs_by_batch_size']}; per-batch stage medians {r['stages_ms_p50']} ms."),
        (f"- RSS of the stream process: {rss['first']:.0f} MB at the first sample, {rss['last']:.0f} MB at the last "
         f"(min {rss['min']:.0f}, max {rss['max']:.0f}); slope {rss['slope_second_half_mb_per_min']} MB/min over the "
         f"second half, {rss['slope_last_third_mb_per_min']} MB/min over the last third."),
        f"- `stream`'s own summary: {' '.join(r['stream_summary'])}",
        f"- Raw samples (RSS and load every {report['settings']['sample_s']} s) in [{name}.json]({name}.json).",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--soa", type=float, default=0.2, help="seconds between stimuli (THINGS-EEG2: 0.2)")
    ap.add_argument("--prior-steps", type=int, default=50)
    ap.add_argument("--bundle", type=Path, help="bundle or engine folder (default: the tiny one, exported under --work)")
    ap.add_argument("--work", type=Path, help="folder for the tiny bundle, recording and output (default: temporary)")
    ap.add_argument("--sample-s", type=float, default=5.0, help="seconds between RSS/load samples")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default: benchmarks/results for >= 10 min)")
    ap.add_argument("--name", default=NAME, help="name of the results JSON and README section")
    args = ap.parse_args(argv)
    from eeg2img_deploy.bench import library_versions, machine_info, update_results_readme

    argv = sys.argv[1:] if argv is None else argv
    shown = ["<dir>" if i and argv[i - 1] in ("--work", "--bundle", "--out") else a for i, a in enumerate(argv)]
    command = shlex.join(["python", "benchmarks/stream_soak.py", *shown])
    with tempfile.TemporaryDirectory(prefix="stream-soak-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        bundle = args.bundle or prepare_bundle(work)
        sample_s = min(args.sample_s, max(0.5, args.minutes * 60 / 10))  # at least ~10 samples in a short run
        result = run_soak(bundle, work, minutes=args.minutes, soa=args.soa, prior_steps=args.prior_steps,
                          sample_s=sample_s)
    report = {"command": command, "machine": machine_info(), "versions": library_versions(),
              "settings": {"minutes": args.minutes, "soa_s": args.soa, "prior_steps": args.prior_steps,
                           "image_size": IMAGE_SIZE, "sample_s": sample_s}, "result": result}
    r = result
    print(f"{r['epochs']}/{r['stimuli']} epochs, dropped {r['dropped']}, latency from stimulus "
          f"{r['latency_ms']['from_stimulus']}, RSS {r['rss_mb']}")
    out = args.out or (Path(__file__).parent / "results" if args.minutes >= 10 else None)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
        update_results_readme(out / "README.md", args.name, section(report, args.name))
        print(f"wrote {out / args.name}.json and its README.md section")
    return 0 if r["epochs"] > 0 and r["stream_exit_code"] == 130 else 1


if __name__ == "__main__":
    sys.exit(main())
