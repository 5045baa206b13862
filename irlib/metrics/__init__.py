"""Metrics the field can trust: BasicIRSTD-exact IoU/nIoU/Pd/Fa, all-threshold sweeps and HSE.

- :class:`SirstMetrics` / :func:`evaluate`: IoU (pooled), nIoU, Pd, Fa at one threshold
  (default 0.5 on probabilities, strict ``>``), with options for legacy conventions.
- :class:`ThresholdSweep` / :func:`evaluate_sweep`: per-image counts for a whole threshold grid in one
  pass -> :class:`SweepCounts` -> :class:`SweepCurves` (IoU(t), nIoU(t), Pd(t), Fa(t), ROC, PR,
  Pd-Fa and their areas).
- :func:`hse`: the Holistic SIRST Evaluation score (see ``docs/hse.md``).
- :mod:`irlib.metrics.io`: the saved-predictions format; :mod:`irlib.metrics.explorer`: the
  ipywidgets threshold explorer; :mod:`irlib.metrics.reference`: a slow BasicIRSTD-style oracle.
- :mod:`irlib.metrics.study` (methods' maps and scores on a test set), :mod:`irlib.metrics.tables`
  (tables in percent and 1e-6) and :mod:`irlib.metrics.ranking` (ranking stability): the method
  comparison of notebook 03.

Rules and their sources: ``docs/metrics.md``.
"""

from irlib.metrics.hse import HSEConfig, HSEResult, fa_penalty, hse, integrate
from irlib.metrics.io import load_predictions, save_predictions
from irlib.metrics.standard import ImageCounts, MetricOptions, SirstMetrics, evaluate
from irlib.metrics.sweep import SweepCounts, SweepCurves, ThresholdSweep, evaluate_sweep
from irlib.metrics.thresholds import binarize, default_thresholds, quantized_map

__all__ = [
    "HSEConfig", "HSEResult", "ImageCounts", "MetricOptions", "SirstMetrics", "SweepCounts",
    "SweepCurves", "ThresholdSweep", "binarize", "default_thresholds", "evaluate",
    "evaluate_sweep", "fa_penalty", "hse", "integrate", "load_predictions", "quantized_map",
    "save_predictions",
]
