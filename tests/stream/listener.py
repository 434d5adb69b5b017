"""An experiment program's side of ``stream --outlet``, written with pylsl: ``python listener.py NAME N``.

Resolves the Markers stream NAME, prints ``connected``, then one JSON line per sample received
(``{"timestamp": ..., "sample": <the sample's string>}``, the timestamp on this machine's LSL clock) until N
samples or 120 s.
"""

from __future__ import annotations

import json
import sys
import time

import pylsl


def main() -> None:
    name, n = sys.argv[1], int(sys.argv[2])
    found = pylsl.resolve_byprop("name", name, minimum=1, timeout=120)
    if not found:
        print("not found", flush=True)
        return
    info = found[0]
    print(json.dumps({"type": info.type(), "format": info.channel_format(), "channels": info.channel_count()}), flush=True)
    inlet = pylsl.StreamInlet(info, processing_flags=pylsl.proc_clocksync)
    inlet.open_stream(timeout=10)
    print("connected", flush=True)
    got, deadline = 0, time.monotonic() + 120
    while got < n and time.monotonic() < deadline:
        sample, ts = inlet.pull_sample(timeout=0.5)
        if sample is not None:
            print(json.dumps({"timestamp": ts, "sample": sample[0]}), flush=True)
            got += 1


if __name__ == "__main__":
    main()
