"""``eval``: the paper's reconstruction metrics, the encoder's zero-shot retrieval, and the quality cost of
each speed knob, for a deployed engine.

A thin adapter over the runtime: reconstructions come from :class:`~..runtime.pipeline.Pipeline` (the
sweep) or from any folder of images, EEG through the runtime's readers, latency through ``bench``'s
timing loop. The metric networks (torch, torchvision, transformers) are the ``eval`` extra and load only
from local files. Modules: :mod:`.protocol` (the paper's sizes, layers and weight files, written once),
:mod:`.images` (reading and pairing the sets), :mod:`.scores` (the metrics on arrays, numpy),
:mod:`.networks` (the networks and their features), :mod:`.metrics` (the eight numbers),
:mod:`.retrieval` (top-1/top-5, k-way), :mod:`.sweep` (the grid of settings), :mod:`.report` (tables and
the plot), :mod:`.command` (the CLI).
"""
