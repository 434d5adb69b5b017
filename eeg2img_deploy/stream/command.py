"""``eeg2img-deploy stream``: reconstruct images live from an LSL EEG stream (click and stdlib only at the top)."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import click

from ..cli_options import (
    OUT_FOLDER,
    SAMPLING,
    Range,
    RunOptions,
    RuntimeOptions,
    number,
    parse_event_id,
    run_options,
    runtime_options,
)


def _renamed_events(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    """``stream --events NAME`` named the marker stream until issue 23; ``--events`` is an events file everywhere."""
    if value is not None:
        raise click.BadParameter(f"stream takes its marker stream as --event-stream NAME (--events is an events file, "
                                 f"for infer/reference/client on a raw recording): --event-stream {value}",
                                 ctx, param)


@click.command("stream")
@click.option("--bundle", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Export bundle or engine folder.")
@click.option("--out", required=True, type=OUT_FOLDER,
              help="Output folder: epoch_NNNNNN.png + epochs.jsonl, written as epochs arrive.")
@click.option("--subject", required=True, type=click.IntRange(min=0), help="Subject id (sub-08 -> 8).")
@click.option("--source", default=None, help="EEG stream name [default: the one LSL stream of type EEG].")
@click.option("--event-stream", default=None, metavar="NAME",
              help="Marker/annotation stream, by name [default: the one such stream].")
@click.option("--events", "old_events", default=None, hidden=True, expose_value=False, callback=_renamed_events,
              type=click.Path(dir_okay=False, path_type=Path))  # the old spelling: an error naming --event-stream
@click.option("--event-channel", default=None, help="Stim channel in the EEG stream, instead of a marker stream.")
@click.option("--event-id", default=None, help="Which events, as JSON: 3, [1, 2] or {\"stimulus\": 1}.")
@click.option("--max-epochs", type=click.IntRange(min=1), default=None, help="Stop after this many images.")
@click.option("--replay", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Play this recording (.fif/.edf/.bdf/.vhdr with its annotations, or .xdf: its EEG and marker "
                   "streams, chosen with --source/--event-stream) as the stream.")
@number("--connect-timeout", rule=Range(0), default=10.0, show_default=True,
        help="Seconds to wait for the streams to appear at start.")
@number("--reconnect-timeout", rule=Range(0), default=10.0, show_default=True,
        help="Seconds to wait for a stream that disappeared before giving up.")
@click.option("--queue-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Epochs waiting for the engines; beyond it the oldest waiting epoch is dropped (counted).")
@click.option("--rename-channels", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="JSON {\"stream channel\": \"encoder channel name\"}.")
@click.option("--allow-resample", is_flag=True, help="Upsample streams below 250 Hz instead of refusing.")
@click.option("--stream-unit", type=click.Choice(["uV", "mV", "V"], case_sensitive=False), default=None,
              help="The EEG stream's unit, for streams that declare none in their meta-data (or a wrong one) "
                   "[default: the declared unit per channel].")
@click.option("--overwrite", is_flag=True, help="Replace the epoch images and epochs.jsonl of an earlier run in --out.")
@click.option("--outlet", default=None, metavar="NAME",
              help="Publish one LSL marker per image on a string stream of type Markers named NAME: JSON with epoch, "
                   "image, stimulus_time and the latencies, stamped when the image is written.")
@click.option("--view", is_flag=True, help="Serve a live page of the reconstructions on localhost.")
@click.option("--view-port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port of the --view page (0: any free port).")
@run_options(*SAMPLING, "shared_subject_token")
@runtime_options
def stream_cmd(bundle: Path, out: Path, subject: int, source: str | None, event_stream: str | None,
               event_channel: str | None,
               event_id: str | None, max_epochs: int | None, replay: Path | None, connect_timeout: float,
               reconnect_timeout: float, queue_size: int, rename_channels: Path | None, allow_resample: bool,
               stream_unit: str | None, overwrite: bool, outlet: str | None, view: bool, view_port: int, run: RunOptions,
               runtime: RuntimeOptions) -> None:
    """Reconstruct an image for each stimulus of a live LSL EEG stream (or a --replay of a recording)."""
    from concurrent.futures import ThreadPoolExecutor

    from ..eeg.mne_preprocess import read_channel_renames
    from .lsl import import_mne_lsl
    from .output import EpochWriter, ImageOutlet, LiveState
    from .reconstructor import StreamReconstructor, StreamSettings

    xdf = None
    if replay:
        from ..eeg.readers import RAW_SUFFIXES

        playable = (*RAW_SUFFIXES, ".xdf")
        if not replay.name.lower().endswith(playable):  # before: "not a raw recording mne can read", no option named
            raise click.BadParameter(f"{replay.name} is not a recording to play: give a {', '.join(playable)} file "
                                     "(epoched trials, .npy/.npz, go to infer --eeg)", param_hint="--replay")
    if replay and replay.suffix.lower() == ".xdf":  # --source/--event-stream/--stream-unit choose within the file
        xdf = {"source": source, "event_stream": event_stream, "stream_unit": stream_unit}
        source = event_stream = stream_unit = None
    elif replay and (source or stream_unit):
        raise click.BadParameter("--replay plays its own stream (in volts, read by mne): drop --source and --stream-unit")
    import_mne_lsl()
    settings = StreamSettings(
        subject=subject, source=source, event_stream=event_stream, event_channel=event_channel,
        event_id=parse_event_id(event_id), queue_size=queue_size, max_epochs=max_epochs,
        connect_timeout=connect_timeout, reconnect_timeout=reconnect_timeout, allow_resample=allow_resample,
        stream_unit=stream_unit,
        rename_channels=read_channel_renames(rename_channels) if rename_channels else None,
        run=run,
    )
    writer = EpochWriter(out, overwrite=overwrite)  # refuses a used folder before anything starts
    spec = runtime.check_bundle(bundle, [subject], run.shared_subject_token)  # before waiting for any stream
    # The engines open (seconds) while the streams are found and buffered: stimuli sent meanwhile are kept.
    opening = ThreadPoolExecutor(1, thread_name_prefix="open-engines").submit(runtime.open, bundle)
    player = None
    if replay:
        from .replay import start_player

        player = start_player(replay, name=f"eeg2img-replay-{os.getpid()}", xdf=xdf)
    rec = StreamReconstructor(None, settings, player=player, spec=spec)
    state = LiveState()
    live = _LiveLine()
    page = None
    markers_out = None
    interrupted: list[bool] = []

    def on_sigint(signum, frame):
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(True)
        rec.stop()
        click.echo("\nCtrl-C: stopping after the epoch in flight (Ctrl-C again to abort)", err=True)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        click.echo(f"looking for the LSL streams (up to {connect_timeout:g} s)...", err=True)
        try:
            rec.connect()  # wrong channels, rate or units end here, before any epoch
        except Exception:
            if opening.done() and (error := opening.exception()) is not None:
                raise error from None  # the engines' error comes first
            raise
        writer.header = {**rec.header, "subject": subject, "bundle": str(bundle), **run.record()}
        if outlet:  # before the engines are open: subscribers have time to connect (LSL keeps no history)
            markers_out = ImageOutlet(outlet, out)
            click.echo(f"publishing a marker per image on LSL stream {outlet!r} (type Markers)", err=True)
        rec.attach(opening.result())  # the streams buffer meanwhile
        if view:
            from .view import LiveView

            page = LiveView(state, out, view_port).start()
            click.echo(f"live view: {page.url}", err=True)
        state.status = "waiting for stimuli"
        for result in rec:
            record = writer.write(result)
            if markers_out is not None:
                markers_out.push(record)
            state.add(record, rec.stats)
            live.show(state.line())
    finally:
        signal.signal(signal.SIGINT, previous)
        writer.close()
        rec.close()
        live.end()
        state.status = "stopped"
        if page is not None:
            page.close()
        if markers_out is not None:
            markers_out.close()
    _summary(out, rec.stats, state)
    if interrupted:
        sys.exit(130)


def _summary(out: Path, stats, state) -> None:
    p50, p99 = state.percentiles()
    lat = "" if stats.epochs == 0 else f"; stimulus-to-image latency p50 {p50:.0f} ms, p99 {p99:.0f} ms"
    drops = f" ({json.dumps(dict(stats.dropped))})" if stats.dropped else ""
    batches = ", ".join(f"{n} x {size}" for size, n in sorted(stats.batches.items()))
    ignored = (f"; {sum(stats.ignored.values())} marker(s) ignored ({json.dumps(dict(stats.ignored))})"
               if stats.ignored else "")
    click.echo(f"{stats.epochs} epoch(s) written to {out}, {stats.n_dropped} dropped{drops}{lat}; "
               f"batches: {batches or 'none'}{ignored}")


class _LiveLine:
    """One status line on stderr: rewritten in place on a terminal, every 10th epoch otherwise."""

    def __init__(self):
        self.tty = sys.stderr.isatty()
        self.n = 0

    def show(self, text: str) -> None:
        self.n += 1
        if self.tty:
            click.echo(f"\r{text}\033[K", err=True, nl=False)
        elif self.n % 10 == 1:
            click.echo(text, err=True)

    def end(self) -> None:
        if self.tty and self.n:
            click.echo("", err=True)
