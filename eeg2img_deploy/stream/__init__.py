"""Live reconstruction from a Lab Streaming Layer EEG stream (the ``stream`` extra: mne-lsl)."""
