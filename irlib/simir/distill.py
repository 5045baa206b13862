"""SimIR's teacher -> student distillation, as irlib builds it (the authors released no distillation code).

Stage 1 (:class:`FeatureDistiller`, :class:`DistillObjective`): the student's four multi-scale
encoder features regress a frozen teacher encoder's features on unlabelled infrared images
(training images and synthetic ones, never test images). Each student level has its own 1x1
adapter to the teacher's width; the teacher map is area-resized to the level's grid and both
sides are normalised per pixel over channels (LayerNorm without affine), so the loss is the mean
squared error between feature directions and does not depend on the teacher's scale. Teacher
maps are matched to student levels in order (``teacher_level_map``). Optionally, output-level
distillation adds a BCE between the student's final logits and a fine-tuned teacher's
probabilities (notebook 01's probe), weighted by ``output_weight``.

Stage 2 is ordinary fine-tuning of the distilled student (the ``simir`` / ``simir_cpu`` recipe).

What is irlib's choice here (the paper's details are unavailable, see ``simir.md`` section 3):
the feature loss, its normalisation, the level matching, and the data of stage 1.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irlib.engine.normalize import Normalize
from irlib.errors import IrlibInputError
from irlib.simir.student import SimIRStudent
from irlib.vfm import FrozenEncoder

OutputTeacher = Callable[[Tensor, Tensor], Tensor]   # (raw [0, 1], host-normalised) -> logits


def teacher_level_map(student_levels: int, teacher_maps: int) -> list[int]:
    """Which teacher map each student level regresses: spread in order, shallow to deep
    (4 levels on 4 maps: 0, 1, 2, 3; on 1 map: 0, 0, 0, 0; on 12 ViT blocks picked as 4: 0..3)."""
    if teacher_maps < 1 or student_levels < 1:
        raise IrlibInputError("teacher and student need at least one feature map each")
    if student_levels == 1:
        return [teacher_maps - 1]
    return [round(i * (teacher_maps - 1) / (student_levels - 1)) for i in range(student_levels)]


def channel_norm(x: Tensor) -> Tensor:
    """LayerNorm over channels at every pixel, without affine parameters."""
    return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2]).permute(0, 3, 1, 2)


class FeatureDistiller(nn.Module):
    """Student + per-level adapters + frozen teacher encoder; only the first two train."""

    def __init__(self, student: SimIRStudent, teacher: FrozenEncoder) -> None:
        super().__init__()
        if not isinstance(teacher, FrozenEncoder):
            raise IrlibInputError(f"the teacher must be an irlib encoder (irlib.vfm.create_encoder), "
                                  f"got {type(teacher).__name__}")
        self.student = student
        self.teacher = teacher
        levels = 4
        self.level_map = teacher_level_map(levels, len(teacher.feature_channels))
        dim = student.bottleneck_channels
        self.adapters = nn.ModuleList(nn.Conv2d(dim, teacher.feature_channels[j], 1) for j in self.level_map)

    def student_features(self, x: Tensor) -> list[Tensor]:
        """The student's four ``dim``-channel levels, cropped to the unpadded input."""
        h, w = x.shape[-2:]
        feats = self.student.encoder(self.student.pad_input(x)).features
        s0 = self.student.encoder.stem_stride
        return [f[..., : -(-h // (s0 * 2 ** i)), : -(-w // (s0 * 2 ** i))] for i, f in enumerate(feats)]

    def feature_loss(self, raw: Tensor, x: Tensor) -> tuple[Tensor, list[float]]:
        """Mean over levels of the MSE between normalised adapted student and teacher maps."""
        with torch.no_grad():
            targets = self.teacher(raw).features
        losses = []
        for level, f in enumerate(self.student_features(x)):
            t = targets[self.level_map[level]].to(f.dtype)
            t = F.adaptive_avg_pool2d(t, f.shape[-2:]) if t.shape[-2] >= f.shape[-2] else \
                F.interpolate(t, size=f.shape[-2:], mode="bilinear", align_corners=False)
            losses.append(F.mse_loss(channel_norm(self.adapters[level](f)), channel_norm(t)))
        return torch.stack(losses).mean(), [float(v.detach()) for v in losses]

    def export_student(self) -> SimIRStudent:
        """The student alone (adapters and teacher dropped), ready for stage 2."""
        return self.student


class DistillObjective:
    """Stage-1 objective for :func:`irlib.engine.fit`: feature distillation (+ optional output KD).

    Masks in the batch are ignored: stage 1 needs no labels.
    """

    def __init__(self, normalize: Normalize, output_teacher: OutputTeacher | None = None,
                 output_weight: float = 0.0) -> None:
        if output_weight > 0 and output_teacher is None:
            raise IrlibInputError("output_weight > 0 needs an output_teacher (a fine-tuned model)")
        self.normalize = normalize
        self.output_teacher = output_teacher
        self.output_weight = float(output_weight)

    def __call__(self, model: FeatureDistiller, batch: dict) -> tuple[Tensor, dict[str, float]]:
        raw = batch["image"]
        x = self.normalize(raw)
        loss, per_level = model.feature_loss(raw, x)
        logs = {"feat": float(loss.detach()), **{f"feat{i}": v for i, v in enumerate(per_level)}}
        if self.output_weight > 0:
            with torch.no_grad():
                soft = torch.sigmoid(self.output_teacher(raw, x))
            out = model.student(x)
            final = out[0] if isinstance(out, list) else out
            kd = F.binary_cross_entropy_with_logits(final, soft)
            logs["kd"] = float(kd.detach())
            loss = loss + self.output_weight * kd
        logs["loss"] = float(loss.detach())
        return loss, logs


def unlabelled_images(train: Sequence, synthetic: Sequence | None = None) -> list:
    """Stage-1 images: the training split plus optional synthetic images (never a test split)."""
    items = list(train)
    if synthetic is not None:
        items += list(synthetic)
    names = [getattr(s, "name", None) for s in items]
    if len(set(names)) != len(names):
        raise IrlibInputError("stage-1 images have repeated names; synthetic and real images must differ")
    return items
