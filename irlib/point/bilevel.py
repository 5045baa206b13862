"""Bilevel teacher/student distillation of Yao et al. ("semantic priors"), trained by :func:`irlib.engine.fit`.

Teacher = :class:`~irlib.point.scam.ScamTeacher` (host encoder -> SCAM on a frozen VFM -> host
decoder, the host's weights shared); student = the host alone; the deployed model is
``teacher.export_student()``. ``fit`` trains the teacher module (host + SCAM) with
:class:`BilevelObjective`; :class:`OuterLoop` (a hook) makes the outer steps; the cluster weights
live outside the fitted module, so only the outer step changes them.

Inner step (every optimiser step; fit's optimiser over host + SCAM, as the release's ``optim_inner``)::

    L_in = mean_b[ w_b (P(T_b, y_b) + 0.1 A(S_b, T_b)) ] + 0.005 mean|gate|

* ``T``/``S``: teacher / student logits of the crop; ``y``: the evolving pseudo-label
  (:class:`~irlib.point.labels.EvolvingLabels`); ``w_b``: :class:`~irlib.point.clusters.ClusterWeights`
  of image ``b``'s cluster, **detached** (``alpha`` gets no gradient here).
* ``P`` (``pseudo_loss``): ``"bce"`` (release: BCE on the binarised PAL label) or ``"focal"``
  (LESPS's focal loss on soft labels, per-image terms whose batch mean is LESPS's loss).
* ``A`` (``align``): student-to-teacher alignment, release: ``MSE(sigmoid(S/4), sigmoid(T/4))``
  with ``S`` computed under ``no_grad``, so the **teacher is pulled toward the detached student**
  (and the host through the teacher path). ``align_target="teacher"`` reverses it (student pulled
  to the detached teacher); ``align="bce"`` uses BCE against the detached probability instead.

Outer step (:class:`OuterLoop`: after every epoch ``e`` (0-based) with ``e % outer_every == 0``,
0 included, the last epoch excluded, ``outer_steps`` (4) steps, each on one training batch and one
validation batch; its own AdamW(``lr_outer``, weight decay 0.01) over the host's parameters **and**
``alpha``, as the release's ``Architect``)::

    F(batch) = mean_b[ w_b(alpha) (kd MSE(sigmoid(S/4), sigmoid(T/4)) + BCE(S, y)) ],  T under no_grad, kd = 1

``hypergradient="first_order"`` (release ``utils/gn_bilevel.py``)::

    g_val = grad_{theta, alpha} F(val batch);   g_tr = grad_{theta, alpha} F(train batch)
    c     = <g_val_theta, g_tr_theta> / (|g_tr_theta|^2 + 1e-12)     (a number, no graph)
    grad  = g_val + eta c g_tr,   eta = the inner learning rate

``"validation"`` keeps only ``g_val`` (DARTS' first-order approximation), for ablations.

**How this differs from the paper's stated bilevel problem.** The paper states
``min_alpha F_val(theta*(alpha), alpha)`` with ``theta*(alpha) = argmin_theta L_in(theta, alpha)``: the
teacher adapted on reweighted training samples (inner), validation-guided transfer to the student
(outer). Its hypergradient is ``grad_alpha F_val - grad2_{alpha theta} L_in [grad2_{theta theta} L_in]^-1
grad_theta F_val`` (implicit function theorem) or a derivative unrolled through inner steps. The
released code computes neither:

1. no second derivative and no unrolled copy: the implicit term is replaced by the rescaled
   gradient ``eta c g_tr`` (a Gauss-Newton-style one-step surrogate, ``grad2 L ~ g_tr g_tr^T``);
2. the lower-level loss in it is the outer (student) loss ``F`` on a training batch, not ``L_in``;
3. ``alpha`` enters ``L_in`` only detached, so ``theta*(alpha)`` is never differentiated: ``alpha``
   moves by the direct gradient of ``F`` through the per-batch weights of the val and train batches;
4. the host ``theta`` is updated by the outer optimiser too (the student's only direct training
   signal: the inner loss reaches the host through the teacher path);
5. the inner problem is never solved: 4 outer steps every 5 epochs.

irlib reproduces the release's update, with these differences: ``F`` of the training batch is
evaluated once (the release runs it twice, which only updates BatchNorm statistics once more);
the VFM sees the same flipped crop as the host (release: the unaugmented crop); the outer step runs
in float32 (no AMP); batches are drawn by a seeded generator (``seed``, epoch, step), not from
fresh shuffled loaders.

Validation split (:func:`point_label_split`): drawn from the training images (``"tail"``: the last
``fraction`` in natural name order, the release's numeric-id tail; or ``"random"``), every image in
the pool, labels = PAL's Canny initial masks from the points, evolved with the training labels:
never ground truth (the real masks are kept only to measure pseudo-label IoU).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import default_collate

from irlib.data.points import centroid_points, coarse_points
from irlib.data.sample import Sample
from irlib.data.torchdata import SirstTorchDataset
from irlib.engine.evaluate import evaluate_model
from irlib.engine.normalize import Normalize
from irlib.engine.trainer import EpochContext, Hook
from irlib.errors import IrlibInputError
from irlib.point.clusters import ClusterTable, ClusterWeights
from irlib.point.labels import EvolvingLabels
from irlib.point.losses import LespsFocalLoss
from irlib.point.pal import initial_mask
from irlib.point.scam import GATE_L1_WEIGHT, ScamTeacher

HYPERGRADIENTS = ("first_order", "validation")
PSEUDO_LOSSES = ("bce", "focal")
ALIGNS = ("mse", "bce")
ALIGN_TARGETS = ("student", "teacher")
SPLIT_MODES = ("tail", "random")
ALIGN_WEIGHT = 0.1        # release: inner KD weight
KD_WEIGHT = 1.0           # release: outer KD weight
TEMPERATURE = 4.0         # release: KD temperature
OUTER_EVERY, OUTER_STEPS = 5, 4
OUTER_WEIGHT_DECAY = 0.01  # release: AdamW default (arch_weight_decay is parsed but unused)
VAL_FRACTION = 274 / 1676  # release: 274 of SIRST3's 1676 training images


def _choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise IrlibInputError(f"{name}={value!r}: choose one of {tuple(allowed)}")
    return value


def _maps(out: Tensor | Sequence[Tensor]) -> list[Tensor]:
    return list(out) if isinstance(out, (list, tuple)) else [out]


# ----------------------------------------------------------------------------- per-image terms
def bce_per_image(out: Tensor | Sequence[Tensor], target: Tensor) -> Tensor:
    """``(B,)`` BCE of each image (mean over pixels, then over deep-supervision maps; release ``task_loss``)."""
    t = target.float()
    return torch.stack([F.binary_cross_entropy_with_logits(m.float(), t, reduction="none").flatten(1).mean(1)
                        for m in _maps(out)]).mean(0)


def kd_per_image(student: Tensor | Sequence[Tensor], teacher: Tensor | Sequence[Tensor],
                 temperature: float = TEMPERATURE, kind: str = "mse", target: str = "teacher") -> Tensor:
    """``(B,)`` distance of ``sigmoid(s / T)`` to ``sigmoid(t / T)`` per image (release ``kd_loss``:
    the teacher's final map against every student map, averaged). Detach the side that must not learn.

    ``kind="bce"``: BCE of the other side's logits against ``sigmoid(target side / T)``
    (``target``: ``"teacher"`` or ``"student"``); ``"mse"`` is symmetric."""
    _choice("kind", kind, ALIGNS)
    _choice("target", target, ALIGN_TARGETS)
    t_map = _maps(teacher)[0].float() / temperature
    out = []
    for s in _maps(student):
        s_map = s.float() / temperature
        if kind == "mse":
            d = (torch.sigmoid(s_map) - torch.sigmoid(t_map)) ** 2
        elif target == "teacher":
            d = F.binary_cross_entropy_with_logits(s_map, torch.sigmoid(t_map), reduction="none")
        else:
            d = F.binary_cross_entropy_with_logits(t_map, torch.sigmoid(s_map), reduction="none")
        out.append(d.flatten(1).mean(1))
    return torch.stack(out).mean(0)


def batch_clusters(table: ClusterTable, batch: dict[str, Any], device: torch.device) -> Tensor:
    """Cluster ids of a batch's images (its ``"name"`` entries)."""
    names = batch.get("name")
    if names is None:
        raise IrlibInputError("bilevel training needs each batch's image names (key 'name'); train on a "
                              "SirstTorchDataset over EvolvingLabels.training_view()")
    return table.ids([names] if isinstance(names, str) else list(names)).to(device)


# ----------------------------------------------------------------------------- inner step
class BilevelObjective:
    """The inner step for :func:`irlib.engine.fit`: ``objective(teacher, batch) -> (L_in, logs)``.

    Args:
        normalize: host input normalisation (the VFM sees the raw [0, 1] crop).
        table, weights: image name -> cluster, and the cluster weights (read detached here).
        pseudo_loss: ``"bce"`` (release) or ``"focal"`` (LESPS, soft labels).
        align, align_target, align_weight, temperature: the alignment term (module docstring).
        gate_weight: weight of SCAM's gate L1 penalty (0.005).
    """

    def __init__(self, normalize: Normalize, table: ClusterTable, weights: ClusterWeights, *,
                 pseudo_loss: str = "bce", align: str = "mse", align_target: str = "student",
                 align_weight: float = ALIGN_WEIGHT, temperature: float = TEMPERATURE,
                 gate_weight: float = GATE_L1_WEIGHT) -> None:
        self.normalize, self.table, self.weights = normalize, table, weights
        self.pseudo_loss = _choice("pseudo_loss", pseudo_loss, PSEUDO_LOSSES)
        self.align = _choice("align", align, ALIGNS)
        self.align_target = _choice("align_target", align_target, ALIGN_TARGETS)
        if align_weight < 0 or gate_weight < 0 or not temperature > 0:
            raise IrlibInputError(f"align_weight and gate_weight must be >= 0 and temperature > 0, got "
                                  f"{align_weight}, {gate_weight}, {temperature}")
        self.align_weight, self.temperature, self.gate_weight = float(align_weight), float(temperature), float(gate_weight)
        self.focal = LespsFocalLoss()

    def describe(self) -> dict[str, Any]:
        """The inner loss's settings, for results rows."""
        return {"pseudo_loss": self.pseudo_loss, "align": f"{self.align}(sigmoid(S/{self.temperature:g}), "
                f"sigmoid(T/{self.temperature:g})), {self.align_target} detached", "align_weight": self.align_weight,
                "gate_weight": self.gate_weight}

    def __call__(self, model: nn.Module, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
        if not isinstance(model, ScamTeacher):
            raise IrlibInputError(f"BilevelObjective trains a ScamTeacher (host + SCAM), got {type(model).__name__}; "
                                  "pass the teacher to fit and deploy teacher.export_student()")
        raw, target = batch["image"], batch["mask"]
        x = self.normalize(raw)
        if self.weights.alpha.device != raw.device:
            self.weights.to(raw.device)           # in place: the Parameter object stays the same
        w = self.weights(batch_clusters(self.table, batch, raw.device), detach=True)
        teacher = model(raw, x)
        if self.align_target == "student":
            with torch.no_grad():
                student = model.student(x)
        else:
            student = model.student(x)
            teacher_target = [m.detach() for m in _maps(teacher)]
        pseudo = (self.focal.per_image(teacher, target) if self.pseudo_loss == "focal"
                  else bce_per_image(teacher, target))
        align = kd_per_image(student, teacher if self.align_target == "student" else teacher_target,
                             self.temperature, self.align, self.align_target)
        gate = model.gate_penalty()
        loss = (w * (pseudo + self.align_weight * align)).mean() + self.gate_weight * gate
        return loss, {"pseudo": float(pseudo.mean().detach()), "align": float(align.mean().detach()),
                      "gate": float(gate.detach())}


# ----------------------------------------------------------------------------- outer step
def outer_loss(teacher: ScamTeacher, weights: ClusterWeights, table: ClusterTable, batch: dict[str, Any],
               normalize: Normalize, kd_weight: float = KD_WEIGHT, temperature: float = TEMPERATURE) -> Tensor:
    """The release's ``outer_loss`` ``F``: ``mean_b[w_b(alpha) (kd MSE + BCE(S, y))]``, teacher under no_grad."""
    raw, target = batch["image"], batch["mask"]
    x = normalize(raw)
    w = weights(batch_clusters(table, batch, weights.alpha.device), detach=False).to(raw.device)
    with torch.no_grad():
        t = teacher(raw, x)
    s = teacher.student(x)
    return (w * (kd_weight * kd_per_image(s, t, temperature) + bce_per_image(s, target))).mean()


def _grads(loss: Tensor, params: list[Tensor]) -> list[Tensor]:
    got = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, got)]


def hypergradient(f_val: Tensor, f_train: Tensor, theta: list[Tensor], alpha: Tensor, eta: float,
                  mode: str = "first_order") -> tuple[list[Tensor], float]:
    """Gradients for ``theta + [alpha]`` and the scale ``c`` (module docstring; ``c = 0`` for ``"validation"``)."""
    _choice("hypergradient", mode, HYPERGRADIENTS)
    params = [*theta, alpha]
    g_val = _grads(f_val, params)
    if mode == "validation":
        return g_val, 0.0
    g_tr = _grads(f_train, params)
    n = len(theta)
    dot = sum((a * b).sum() for a, b in zip(g_val[:n], g_tr[:n]))
    norm = sum((b * b).sum() for b in g_tr[:n])
    c = float(dot / (norm + 1e-12))
    return [gv + eta * c * gt for gv, gt in zip(g_val, g_tr)], c


def draw_batch(dataset: SirstTorchDataset, batch_size: int, rng: np.random.Generator) -> dict[str, Any]:
    """``batch_size`` distinct items (all if fewer) drawn with ``rng``, collated."""
    n = len(dataset)
    idx = rng.choice(n, size=min(batch_size, n), replace=False)
    return default_collate([dataset[int(i)] for i in idx])


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}


class OuterLoop(Hook):
    """The outer steps, after every epoch ``e`` (0-based) with ``e % every == 0`` (module docstring).

    Args:
        teacher: the module ``fit`` trains; its host's parameters are also updated here.
        weights, table: the cluster weights (``alpha``, changed only here) and image -> cluster.
        train_set, val_set: crops of the training pool and of the validation split (pseudo-labels).
        normalize: host input normalisation.
        every, steps: outer period (epochs) and steps per outer round (release 5 and 4).
        batch_size: images per outer batch (the recipe's).
        lr: the outer AdamW's learning rate (release ``lr_outer``); ``eta``: the inner one (``lr_inner``).
        hypergradient: ``"first_order"`` (release) or ``"validation"``.
        seed: the batches of epoch ``e``, step ``k`` come from ``default_rng([seed, e, k])``.
    """

    def __init__(self, teacher: ScamTeacher, weights: ClusterWeights, table: ClusterTable,
                 train_set: SirstTorchDataset, val_set: SirstTorchDataset, normalize: Normalize, *,
                 every: int = OUTER_EVERY, steps: int = OUTER_STEPS, batch_size: int = 16, lr: float = 5e-4,
                 eta: float = 5e-4, weight_decay: float = OUTER_WEIGHT_DECAY, hypergradient: str = "first_order",
                 kd_weight: float = KD_WEIGHT, temperature: float = TEMPERATURE, seed: int = 0) -> None:
        if every < 1 or steps < 0 or batch_size < 1 or not lr > 0 or eta < 0:
            raise IrlibInputError(f"OuterLoop needs every >= 1, steps >= 0, batch_size >= 1, lr > 0, eta >= 0; got "
                                  f"{every}, {steps}, {batch_size}, {lr}, {eta}")
        if len(train_set) == 0 or len(val_set) == 0:
            raise IrlibInputError("OuterLoop needs training and validation images; give val_fraction > 0")
        self.teacher, self.weights, self.table = teacher, weights, table
        self.train_set, self.val_set, self.normalize = train_set, val_set, normalize
        self.every, self.steps, self.batch_size = int(every), int(steps), int(batch_size)
        self.lr, self.eta, self.weight_decay = float(lr), float(eta), float(weight_decay)
        self.mode = _choice("hypergradient", hypergradient, HYPERGRADIENTS)
        self.kd_weight, self.temperature, self.seed = float(kd_weight), float(temperature), int(seed)
        self.optimizer: torch.optim.Optimizer | None = None
        self.done = 0   # outer steps made

    def theta(self) -> list[nn.Parameter]:
        return [p for p in self.teacher.host.parameters() if p.requires_grad]

    def _optimizer(self, device: torch.device) -> torch.optim.Optimizer:
        self.weights.to(device)
        if self.optimizer is None:
            self.optimizer = torch.optim.AdamW([*self.theta(), self.weights.alpha], lr=self.lr,
                                               weight_decay=self.weight_decay)
        return self.optimizer

    def due(self, epoch: int, epochs: int | None = None) -> bool:
        """Whether an outer round follows epoch ``epoch`` (0-based) of ``epochs``: never after the last
        one, so the returned model is the one last scored (the release's 300 epochs never end on one)."""
        return self.steps > 0 and epoch % self.every == 0 and (epochs is None or epoch + 1 < epochs)

    def on_epoch_end(self, ctx: EpochContext) -> None:
        if not self.due(ctx.epoch, ctx.epochs):
            return
        logs = [self.step(ctx.epoch, k) for k in range(self.steps)]
        alpha = self.weights.alpha.detach()
        ctx.row.update({"outer_steps": self.done, "outer_val_loss": float(np.mean([l["val"] for l in logs])),
                        "outer_scale": float(np.mean([l["scale"] for l in logs])),
                        "alpha_spread": float(alpha.max() - alpha.min())})

    def step(self, epoch: int, k: int) -> dict[str, float]:
        """One outer step on one training and one validation batch; its ``F(val)`` and scale ``c``."""
        device = next(self.teacher.host.parameters()).device
        opt = self._optimizer(device)
        rng = np.random.default_rng([self.seed, int(epoch), int(k)])
        train_b = _to(draw_batch(self.train_set, self.batch_size, rng), device)
        val_b = _to(draw_batch(self.val_set, self.batch_size, rng), device)
        args = (self.teacher, self.weights, self.table)
        f_val = outer_loss(*args, val_b, self.normalize, self.kd_weight, self.temperature)
        f_tr = outer_loss(*args, train_b, self.normalize, self.kd_weight, self.temperature)
        if not (torch.isfinite(f_val) and torch.isfinite(f_tr)):
            raise IrlibInputError(f"outer step {k} after epoch {epoch + 1}: non-finite loss (val {float(f_val)}, "
                                  f"train {float(f_tr)}); lower lr_outer or check the pseudo-labels")
        theta = self.theta()
        grads, c = hypergradient(f_val, f_tr, theta, self.weights.alpha, self.eta, self.mode)
        opt.zero_grad(set_to_none=True)
        for p, g in zip([*theta, self.weights.alpha], grads):
            p.grad = g.detach()
        opt.step()
        opt.zero_grad(set_to_none=True)
        self.done += 1
        return {"val": float(f_val.detach()), "train": float(f_tr.detach()), "scale": c}

    def state_dict(self) -> dict[str, Any]:
        """``alpha``, the outer optimiser and the step count, for resume."""
        return {"alpha": self.weights.alpha.detach().cpu().clone(), "done": self.done,
                "optimizer": None if self.optimizer is None else self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.weights.alpha.copy_(state["alpha"].to(self.weights.alpha.device))
        self.done = int(state["done"])
        if state["optimizer"] is not None:
            self._optimizer(self.weights.alpha.device).load_state_dict(state["optimizer"])


# ----------------------------------------------------------------------------- the teacher as a network
class TeacherForward(nn.Module):
    """The teacher as a one-input network (host-normalised ``x`` -> logits), for irlib's evaluation
    and label evolution: the VFM's raw input is ``x * std + mean`` (padding becomes the mean gray)."""

    def __init__(self, teacher: ScamTeacher, normalize: Normalize) -> None:
        super().__init__()
        self.teacher, self.normalize = teacher, normalize
        self.train(teacher.training)

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        mean, std = self.normalize.mean.to(x.device, x.dtype), self.normalize.std.to(x.device, x.dtype)
        return self.teacher(x * std + mean, x)


class ViaTeacher(Hook):
    """Run ``hook`` with the teacher network (:class:`TeacherForward`) as the epoch's model, e.g. an
    :class:`~irlib.point.labels.EvolutionHook` that evolves labels from the teacher (release).
    Columns the hook adds to the epoch's row get ``prefix`` (e.g. ``"val_"`` for the validation labels)."""

    def __init__(self, hook: Hook, normalize: Normalize, prefix: str = "") -> None:
        self.hook, self.normalize, self.prefix = hook, normalize, prefix

    def _ctx(self, ctx: EpochContext) -> EpochContext:
        return dataclasses.replace(ctx, model=TeacherForward(ctx.model, self.normalize), row=dict(ctx.row))

    def on_epoch_start(self, ctx: EpochContext) -> None:
        self.hook.on_epoch_start(self._ctx(ctx))

    def on_epoch_end(self, ctx: EpochContext) -> None:
        inner = self._ctx(ctx)
        self.hook.on_epoch_end(inner)
        ctx.row.update({self.prefix + k: v for k, v in inner.row.items() if k not in ctx.row or ctx.row[k] is not v})
        ctx.stop = ctx.stop or inner.stop


class TeacherEval(Hook):
    """Score the teacher on ``test_set`` every ``every`` epochs and after the last one, into the
    epoch's row as ``teacher_eval_*`` (IoU, nIoU, Pd in percent, Fa in 1e-6): the teacher's curve
    next to the engine's ``eval_*`` student curve (a monitoring curve, never used to choose)."""

    def __init__(self, test_set: Any, normalize: Normalize, every: int = 1, prefix: str = "teacher_eval_") -> None:
        if every < 1:
            raise IrlibInputError(f"TeacherEval needs every >= 1, got {every}")
        self.test_set, self.normalize, self.every, self.prefix = test_set, normalize, int(every), prefix

    def on_epoch_end(self, ctx: EpochContext) -> None:
        if (ctx.epoch + 1) % self.every and ctx.epoch + 1 != ctx.epochs:
            return
        device = next(ctx.model.parameters()).device
        scores = evaluate_model(TeacherForward(ctx.model, self.normalize), self.test_set, self.normalize, device)
        ctx.row.update({self.prefix + k: v for k, v in scores.row().items()})


# ----------------------------------------------------------------------------- validation split
def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key with digit runs compared as numbers (``Misc_9 < Misc_10``)."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", str(name)) if t)


def validation_split(names: Sequence[str], fraction: float = VAL_FRACTION, mode: str = "tail",
                     seed: int = 0) -> tuple[list[int], list[int]]:
    """``(train indices, validation indices)`` (each sorted) of the training images ``names``.

    ``"tail"``: the last ``round(fraction n)`` images in natural name order (the release's val =
    the numeric-id tail of each subset); ``"random"``: a permutation drawn from ``seed``. At least
    one image goes to each side.
    """
    _choice("mode", mode, SPLIT_MODES)
    n = len(names)
    if not 0 < fraction < 1 or n < 2:
        raise IrlibInputError(f"validation_split needs 0 < fraction < 1 and >= 2 images, got {fraction} and {n}")
    n_val = min(max(1, int(round(fraction * n))), n - 1)
    order = (sorted(range(n), key=lambda i: natural_key(names[i])) if mode == "tail"
             else np.random.default_rng(seed).permutation(n).tolist())
    val = sorted(order[n - n_val:]) if mode == "tail" else sorted(order[:n_val])
    chosen = set(val)
    return [i for i in range(n) if i not in chosen], val


def image_points(sample: Sample, points: str = "centroid", rng: int | np.random.Generator | None = None) -> np.ndarray:
    """The simulated annotation of one image: its centroid or coarse points (``irlib.data.points``)."""
    _choice("points", points, ("centroid", "coarse"))
    return centroid_points(sample.mask) if points == "centroid" else coarse_points(sample.mask, rng)


def validation_labels(samples: Sequence[Sample], points: Sequence[np.ndarray], *, keep_masks: bool = True,
                      keep_snapshots: int | None = None) -> EvolvingLabels:
    """The validation split's labels: PAL's initial masks from image and points, every image in
    the pool (PAL's val is always selected), binary targets. The real masks (``keep_masks``) are
    kept only to measure pseudo-label IoU; no target is computed from them."""
    inits = [initial_mask(s.image, p) for s, p in zip(samples, points)]
    return EvolvingLabels([s.name for s in samples], [s.image for s in samples], list(points),
                          labels=[m.mask.astype(np.float32) for m in inits],
                          masks=[s.mask for s in samples] if keep_masks else None, target="binary",
                          keep_snapshots=keep_snapshots)


def point_label_split(samples: Sequence[Sample], fraction: float = VAL_FRACTION, mode: str = "tail", seed: int = 0,
                      *, points: str = "centroid", target: str = "binary", keep_masks: bool = True,
                      keep_snapshots: int | None = None) -> tuple[EvolvingLabels, EvolvingLabels]:
    """``(training labels, validation labels)`` of the training images ``samples`` (see
    :func:`validation_split`): PAL initial masks and pool for the training part (``target``:
    ``"binary"``, or ``"soft"`` for the focal loss), :func:`validation_labels` for the rest."""
    train_idx, val_idx = validation_split([s.name for s in samples], fraction, mode, seed)
    pts = [image_points(s, points, np.random.default_rng([seed, i])) for i, s in enumerate(samples)]
    train = EvolvingLabels.from_dataset([samples[i] for i in train_idx], [pts[i] for i in train_idx], initial="pal",
                                        target=target, keep_masks=keep_masks, keep_snapshots=keep_snapshots)
    val = validation_labels([samples[i] for i in val_idx], [pts[i] for i in val_idx], keep_masks=keep_masks,
                            keep_snapshots=keep_snapshots)
    return train, val


def alpha_of(weights: ClusterWeights) -> np.ndarray:
    """A copy of the cluster logits ``alpha`` (numpy)."""
    return weights.alpha.detach().cpu().numpy().copy()


__all__ = ["ALIGNS", "ALIGN_TARGETS", "HYPERGRADIENTS", "PSEUDO_LOSSES", "SPLIT_MODES", "VAL_FRACTION",
           "BilevelObjective", "OuterLoop", "TeacherEval", "TeacherForward", "ViaTeacher", "alpha_of",
           "bce_per_image", "draw_batch", "hypergradient", "image_points", "kd_per_image", "natural_key",
           "outer_loss", "point_label_split", "validation_labels", "validation_split"]
