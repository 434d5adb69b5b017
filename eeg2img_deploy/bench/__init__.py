"""``bench``: latency of the runtime per stage and end to end, optionally against the PyTorch reference.

The harness behind ``eeg2img-deploy bench`` and the scripts in ``benchmarks/``: it runs the same
:class:`~..runtime.pipeline.Pipeline` that ``infer`` runs, on a fixed synthetic EEG batch, and reports

- cold start: importing the backend, ``Pipeline.from_bundle``, and the first call;
- per stage (encoder, prior, unet, decoder) and end to end: p50/p90/p99, mean, min, max over ``runs``;
- throughput, and the runtime's own overhead: wall time minus the time spent inside backend calls;
- peak host RSS, and CUDA memory where it can be read;
- with ``baseline_weights``: the :class:`~..reference.pipeline.ReferencePipeline` on the same EEG,
  seed and settings in the same process, and the ratio baseline / runtime of each median.

The report is a plain JSON-able dict. Torch is imported only when the baseline is asked for.
Modules: :mod:`.stats` (percentiles, timing loop), :mod:`.machine` (machine, versions, memory),
:mod:`.harness` (the runs), :mod:`.render` (table, plot, markdown).
"""

from .harness import REPORT_VERSION, run_bench, synthetic_eeg
from .machine import library_versions, machine_info
from .render import plot_report, print_report, report_markdown, setup_line, update_results_readme
from .stats import LOW_LEVEL_STAGES, STAGES, latency_stats, report_stages

__all__ = [
    "LOW_LEVEL_STAGES", "REPORT_VERSION", "STAGES", "report_stages", "latency_stats", "library_versions", "machine_info", "plot_report", "print_report",
    "report_markdown", "run_bench", "setup_line", "synthetic_eeg", "update_results_readme",
]
