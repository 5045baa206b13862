"""SimIR (Zhang et al., ACM MM 2024): generic-segmentation probing, a RepViT student with
dense-sparse queries on segment-anything's two-way decoder, and teacher-to-student distillation.

>>> from irlib.models import create_model
>>> student = create_model("simir_tiny")     # or "simir" (released), "simir_s4" (stock stem)
"""

from irlib.simir.distill import DistillObjective, FeatureDistiller, teacher_level_map
from irlib.simir.loss import SimIRLoss
from irlib.simir.probe import ProbeObjective, ProbeSegmenter
from irlib.simir.student import SimIRStudent, load_repvit_weights

__all__ = ["DistillObjective", "FeatureDistiller", "ProbeObjective", "ProbeSegmenter", "SimIRLoss", "SimIRStudent",
           "load_repvit_weights", "teacher_level_map"]
