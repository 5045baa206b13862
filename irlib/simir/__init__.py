"""SimIR (Zhang et al., ACM MM 2024): generic-segmentation probing, a RepViT student with
dense-sparse queries on segment-anything's two-way decoder, and teacher-to-student distillation.

>>> from irlib.models import create_model
>>> student = create_model("simir_tiny")     # or "simir" (released), "simir_s4" (stock stem)

Names are imported on first use, so loading a deployed student (``irlib.models.load_host``)
does not import the frozen encoders (``irlib.vfm``) that probing and distillation need.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "DistillObjective": "irlib.simir.distill", "FeatureDistiller": "irlib.simir.distill",
    "teacher_level_map": "irlib.simir.distill", "SimIRLoss": "irlib.simir.loss",
    "ProbeObjective": "irlib.simir.probe", "ProbeSegmenter": "irlib.simir.probe",
    "SimIRStudent": "irlib.simir.student", "load_repvit_weights": "irlib.simir.student",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'irlib.simir' has no attribute {name!r}")
