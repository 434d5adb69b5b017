"""EEG units of LSL streams and XDF recordings: the declared unit per channel -> a factor to volts.

The encoder is trained on volts (THINGS-EEG2 via MNE), and MNE readers return volts. An LSL stream
carries plain numbers and says what they are in its meta-data, ``desc/channels/channel/unit`` (the XDF
meta-data convention, whose preferred EEG unit is microvolts), and XDF files keep the same
description. Amplifier apps write "microvolts", "µV", "uV", "millivolts", ...; mne-lsl's player writes
MNE's unit multiplier as a number ("0" = V, "-6" = µV). mne-lsl records the declared unit in its
``Info`` but does not scale the data, and maps a unit it does not know ("µV" among them) to volts, so
the unit is read here, from the description itself. A stream that declares no unit for a channel the
encoder needs is refused (there is no safe guess: µV and V differ by 1e6); ``--stream-unit`` sets the
unit, and overrides a wrong declaration. numpy only.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from eeg2img_deploy.errors import EEGInputError

STREAM_UNITS = {"uV": 1e-6, "mV": 1e-3, "V": 1.0}  # --stream-unit choices -> volts per unit
OPTION = "--stream-unit uV|mV|V"

_PREFIXES = {"": 1.0, "milli": 1e-3, "m": 1e-3, "micro": 1e-6, "u": 1e-6, "µ": 1e-6, "μ": 1e-6, "nano": 1e-9,
             "n": 1e-9}
_VOLT = re.compile(r"^(milli|micro|nano|m|u|µ|μ|n)?\s*(v|volts?)$")
_MNE_MULTIPLIERS = {0, -3, -6, -9}  # mne's FIFF unit multipliers (10**n) that a voltage channel may carry


def volts_per_unit(unit: str | None) -> float | None:
    """Volts per unit of a declared unit string ("microvolts", "µV", "uV", "mV", "V", mne's "-6"), else None."""
    if unit is None:
        return None
    text = str(unit).strip()
    if re.fullmatch(r"[+-]?\d+", text):
        n = int(text)
        return 10.0**n if n in _MNE_MULTIPLIERS else None
    m = _VOLT.match(text.lower())
    if m is None or re.fullmatch(r"M\s*V", text):  # "MV" would be megavolts
        return None
    return _PREFIXES[m.group(1) or ""]


def channel_scales(ch_names: Sequence[str], declared: Sequence[str | None] | None, needed: Sequence[str], *,
                   override: str | None = None, what: str = "the stream") -> tuple[np.ndarray, dict[str, Any]]:
    """Per channel of ``ch_names``, the factor that turns its values into volts; and what to record of it.

    ``declared``: the stream's unit per channel (None: none declared); ``needed``: the channels the encoder
    reads (they must have a unit, from the stream or ``override``); other channels keep factor 1.
    """
    names = [str(c) for c in ch_names]
    units = list(declared) if declared is not None else [None] * len(names)
    if len(units) != len(names):
        units = (units + [None] * len(names))[: len(names)]
    scales = np.ones(len(names), dtype=np.float64)
    index = {c: i for i, c in enumerate(names)}
    used = [index[c] for c in needed if c in index]
    declared_used = Counter(str(units[i]).strip() for i in used if units[i] not in (None, ""))
    if override is not None:
        if override not in STREAM_UNITS:
            raise EEGInputError(f"--stream-unit {override!r}: expected one of {', '.join(STREAM_UNITS)}")
        scales[used] = STREAM_UNITS[override]
    else:
        missing = [names[i] for i in used if units[i] in (None, "")]
        unknown = sorted({str(units[i]) for i in used if units[i] not in (None, "") and volts_per_unit(units[i]) is None})
        if len(missing) == len(used):
            raise EEGInputError(
                f"{what} declares no unit for its EEG channels (desc/channels/channel/unit), and the encoder expects "
                f"volts: µV read as V would be 1e6 too large. Say what the stream sends with {OPTION}"
            )
        if missing:
            raise EEGInputError(f"{what} declares no unit for {len(missing)} EEG channel(s) {missing[:8]}; "
                                f"say what it sends with {OPTION}")
        if unknown:
            raise EEGInputError(f"{what} declares unit(s) {unknown}, which are not volts, millivolts or microvolts; "
                                f"if the values are voltages, say which with {OPTION}")
        for i in used:
            scales[i] = volts_per_unit(units[i])
    factors = sorted({float(scales[i]) for i in used})
    record = {
        "declared": dict(declared_used) or None,
        "stream_unit": override,
        # one factor for all EEG channels (the usual case), else per channel
        "volts_per_unit": factors[0] if len(factors) == 1 else {names[i]: float(scales[i]) for i in used},
    }
    return scales, record
