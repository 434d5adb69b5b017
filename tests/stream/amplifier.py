"""An amplifier's LSL app, as the tests meet one: ``python amplifier.py DATA.npz --name NAME [--unit microvolts]``.

Written with pylsl (not mne-lsl, which the toolkit reads with): an EEG outlet (float32, its channels'
labels, type and unit in ``desc/channels/channel`` as the XDF meta-data convention has them) and a string
marker outlet ``NAME-markers`` (type Markers). ``DATA.npz`` holds ``eeg`` (channels, samples) in the unit it
declares, ``ch_names``, ``sfreq`` and ``stimuli`` (sample indices; a marker "stimulus" is sent at each).

It prints ``ready`` once its outlets exist, waits for a reader on both (``--wait`` seconds at most), prints
``consumers`` (or ``no consumers``), then sends ``--lead`` seconds of flat signal and the data in real
time, each sample stamped on the LSL clock (a marker carries its sample's stamp), prints ``sent`` and stays
up, sending nothing more, until killed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pylsl


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--name", required=True)
    ap.add_argument("--unit", default="microvolts", help="declared unit; '' declares none")
    ap.add_argument("--wait", type=float, default=30.0)
    ap.add_argument("--lead", type=float, default=0.5)
    args = ap.parse_args()
    z = np.load(args.data)
    eeg, names, sfreq, stimuli = z["eeg"].astype(np.float32), [str(c) for c in z["ch_names"]], float(z["sfreq"]), z["stimuli"]

    info = pylsl.StreamInfo(args.name, "EEG", len(names), sfreq, "float32", f"{args.name}-amp")
    chans = info.desc().append_child("channels")
    for c in names:
        ch = chans.append_child("channel")
        ch.append_child_value("label", c)
        ch.append_child_value("type", "EEG")
        if args.unit:
            ch.append_child_value("unit", args.unit)
    eeg_out = pylsl.StreamOutlet(info, chunk_size=10)
    markers = pylsl.StreamOutlet(pylsl.StreamInfo(f"{args.name}-markers", "Markers", 1, 0, "string",
                                                  f"{args.name}-mrk"))
    print("ready", flush=True)
    deadline = time.monotonic() + args.wait
    while not (eeg_out.have_consumers() and markers.have_consumers()) and time.monotonic() < deadline:
        time.sleep(0.01)
    print("consumers" if eeg_out.have_consumers() and markers.have_consumers() else "no consumers", flush=True)

    n_lead = int(round(args.lead * sfreq))
    data = np.concatenate([np.repeat(eeg[:, :1], n_lead, axis=1), eeg], axis=1).T.copy()  # (samples, channels)
    marks = {int(i) + n_lead for i in stimuli}
    t0 = pylsl.local_clock() + 0.05
    chunk = 10
    for start in range(0, len(data), chunk):
        stop = min(start + chunk, len(data))
        stamps = [t0 + i / sfreq for i in range(start, stop)]
        while pylsl.local_clock() < stamps[-1]:  # real time: a sample leaves once it has been "recorded"
            time.sleep(0.002)
        eeg_out.push_chunk(data[start:stop], stamps)
        for i in range(start, stop):
            if i in marks:
                markers.push_sample(["stimulus"], t0 + i / sfreq)
    print("sent", flush=True)
    while True:
        time.sleep(1.0)


if __name__ == "__main__":
    main()
