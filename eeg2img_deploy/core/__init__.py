"""The torch-free core every step shares: the noise contract, the schedules, the uint8 conversion, the run
options. numpy only; it imports nothing of the package above the manifest, names and errors modules."""
