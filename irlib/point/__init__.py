"""Point-supervised IRSTD: label evolution (LESPS, PAL), SCAM, bilevel distillation and
cluster-level sample reweighting (Yao et al., "Learning with Semantic Priors")."""

from irlib.point.bilevel import (HYPERGRADIENTS, VAL_FRACTION, BilevelObjective, OuterLoop, TeacherEval,
                                 TeacherForward, ViaTeacher, hypergradient, outer_loss, point_label_split,
                                 validation_labels, validation_split)
from irlib.point.clusters import (ClusterTable, ClusterWeights, cluster_count, cluster_dataset,
                                  cluster_descriptors, describe_images, image_descriptors)
from irlib.point.labels import EvolutionHook, EvolvingLabels, LabelRecord, LabelSnapshot, LabelView
from irlib.point.lesps import LespsRule, lesps_update
from irlib.point.losses import LespsFocalLoss
from irlib.point.pal import PalRule, PalSchedule, admit, initial_mask, mine, pal_update, refine
from irlib.point.scam import DEFAULT_SCALE, GATE_L1_WEIGHT, SCAM, ScamTeacher

__all__ = ["BilevelObjective", "HYPERGRADIENTS", "OuterLoop", "TeacherEval", "TeacherForward", "VAL_FRACTION",
           "ViaTeacher", "hypergradient", "outer_loss", "point_label_split", "validation_labels", "validation_split",
           "ClusterTable", "ClusterWeights", "DEFAULT_SCALE", "EvolutionHook", "EvolvingLabels", "GATE_L1_WEIGHT",
           "LabelRecord", "LabelSnapshot", "LabelView", "LespsFocalLoss", "LespsRule", "PalRule", "PalSchedule",
           "SCAM", "ScamTeacher", "admit", "cluster_count", "cluster_dataset", "cluster_descriptors",
           "describe_images", "image_descriptors", "initial_mask", "lesps_update", "mine", "pal_update", "refine"]
