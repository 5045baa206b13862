"""Evolving point-supervision labels of a dataset held in memory, and the training hook that
evolves them.

:class:`EvolvingLabels` keeps, per image, the gray image, its point labels, the current label
(float32 in [0, 1]), whether the image is in the training pool (PAL; always for LESPS) and, when
known, the real mask (only to measure the pseudo-labels). Every update is recorded: a
:class:`LabelRecord` summary (always kept) and a compact snapshot of all labels (the nonzero
pixels as uint8 ``round(255 label)``; the initial one and the ``keep_snapshots`` most recent).

Training: ``SirstTorchDataset(labels.training_view(), train=True, ...)`` reads the current
training targets on every access (soft labels for LESPS, ``label > 0.5`` for PAL), so an update
is seen by the next epoch (``fit`` builds a new DataLoader every epoch). The view keeps the
dataset's length fixed (``fit`` fixes it at the start): an image outside the pool is served as an
image of the pool (the ``r``-th image outside the pool as pool image ``r mod |pool|``), so an epoch
holds ``len(labels)`` items drawn from the pool; PAL's epochs hold the pool only (our choice,
needed because ``fit`` cannot change the epoch length).

:class:`EvolutionHook` (an ``irlib.engine.trainer.Hook``) updates the labels at the end of an
epoch from the model's predictions on the whole training images at native resolution
(:func:`irlib.engine.evaluate.iter_predictions`: padded to a multiple of 32 only when needed,
cropped back; LESPS pads even exact multiples), never after the last epoch.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from irlib.data.points import centroid_points, coarse_points, points_to_mask
from irlib.data.sample import Sample
from irlib.engine.normalize import Normalize
from irlib.engine.trainer import EpochContext, Hook
from irlib.errors import IrlibInputError
from irlib.point.lesps import LespsRule
from irlib.point.pal import PalRule, PalSchedule, initial_mask, mine

Rule = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
TARGETS = ("soft", "binary")


@dataclass(frozen=True)
class LabelRecord:
    """Summary of the labels after update ``step`` (0 = initial) made after ``epoch`` epochs.

    ``iou``: pooled pseudo-label IoU (``label >= 0.5`` vs the real masks, over the pool) or None
    without masks; ``active``: images in the pool; ``admitted``: images mined into it by this
    update; ``foreground``: pool pixels with ``label >= 0.5``.
    """

    step: int
    epoch: int | None
    iou: float | None
    active: int
    admitted: int
    foreground: int


@dataclass(frozen=True)
class LabelSnapshot:
    """All labels (float32, 1/255 steps) and the pool membership after update ``step``."""

    step: int
    labels: list[np.ndarray]
    active: np.ndarray


def _pack(label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    q = np.round(label.ravel() * 255.0).astype(np.uint8)
    idx = np.flatnonzero(q).astype(np.int32)
    return idx, q[idx]


def _unpack(packed: tuple[np.ndarray, np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape[0] * shape[1], dtype=np.float32)
    out[packed[0]] = packed[1].astype(np.float32) / 255.0
    return out.reshape(shape)


class EvolvingLabels:
    """Per-image evolving labels (see the module docstring).

    Args:
        names, images: image names and gray float (H, W) images in [0, 1].
        points: per image an ``(N, 2)`` int array of ``(row, col)`` point labels.
        labels: initial labels (default: the point maps, as LESPS).
        masks: real bool masks (optional; only for :meth:`pseudo_iou`).
        active: initial pool membership (default: every image).
        target: ``"soft"`` (LESPS: the label itself) or ``"binary"`` (PAL: ``label > threshold``).
        threshold: PAL's binarisation level and the level of :meth:`pseudo_iou` (0.5).
        keep_snapshots: most recent label snapshots kept besides the initial one (None: all).
    """

    def __init__(self, names: Sequence[str], images: Sequence[np.ndarray], points: Sequence[np.ndarray], *,
                 labels: Sequence[np.ndarray] | None = None, masks: Sequence[np.ndarray] | None = None,
                 active: Sequence[bool] | None = None, target: str = "soft", threshold: float = 0.5,
                 keep_snapshots: int | None = 10) -> None:
        n = len(names)
        for what, seq in (("images", images), ("points", points), ("labels", labels), ("masks", masks),
                          ("active", active)):
            if seq is not None and len(seq) != n:
                raise IrlibInputError(f"EvolvingLabels: {len(seq)} {what} for {n} names; give one per image")
        if n == 0:
            raise IrlibInputError("EvolvingLabels: no images; give at least one")
        if target not in TARGETS:
            raise IrlibInputError(f"target={target!r}: choose 'soft' (LESPS) or 'binary' (PAL)")
        if keep_snapshots is not None and keep_snapshots < 0:
            raise IrlibInputError(f"keep_snapshots must be >= 0 or None, got {keep_snapshots}")
        self.names = [str(s) for s in names]
        self._images = [self._image(a, nm) for a, nm in zip(images, self.names)]
        self._points = [self._points_of(p, a.shape, nm) for p, a, nm in zip(points, self._images, self.names)]
        if labels is None:
            self._labels = [points_to_mask(p, a.shape).astype(np.float32) for p, a in zip(self._points, self._images)]
        else:
            self._labels = [self._label(lab, a.shape, nm) for lab, a, nm in zip(labels, self._images, self.names)]
        self._masks = None if masks is None else [self._mask(m, a.shape, nm) for m, a, nm
                                                  in zip(masks, self._images, self.names)]
        self._active = np.ones(n, dtype=bool) if active is None else np.asarray(active, dtype=bool).copy()
        self.target_kind, self.threshold, self.keep_snapshots = target, float(threshold), keep_snapshots
        self._serve: list[int] | None = None
        self._records: list[LabelRecord] = []
        self._snapshots: dict[int, tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]] = {}
        self.record(epoch=0)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dataset(cls, dataset: Sequence[Sample], points: str | Sequence[np.ndarray] = "centroid", *,
                     seed: int = 0, initial: str = "points", target: str | None = None, keep_masks: bool = True,
                     keep_snapshots: int | None = 10, **pal_options: Any) -> "EvolvingLabels":
        """Load a dataset (items :class:`Sample`) into memory with point labels.

        ``points``: ``"centroid"`` (:func:`centroid_points`), ``"coarse"`` (:func:`coarse_points`,
        image ``i`` drawn from ``default_rng([seed, i])``) or a list of ``(N, 2)`` arrays.
        ``initial``: ``"points"`` (LESPS: the point maps, all images in the pool; target
        ``"soft"``) or ``"pal"`` (:func:`irlib.point.pal.initial_mask` with ``pal_options``; the
        pool holds the images with >= 80 % of their points covered; target ``"binary"``).
        ``keep_masks=False`` forgets the real masks (no pseudo-label IoU).
        """
        if initial not in ("points", "pal"):
            raise IrlibInputError(f"initial={initial!r}: choose 'points' (LESPS) or 'pal'")
        if isinstance(points, str) and points not in ("centroid", "coarse"):
            raise IrlibInputError(f"points={points!r}: choose 'centroid', 'coarse' or give a list of arrays")
        if pal_options and initial != "pal":
            raise IrlibInputError(f"options {sorted(pal_options)} only apply to initial='pal'")
        samples = [dataset[i] for i in range(len(dataset))]
        if isinstance(points, str):
            pts = [centroid_points(s.mask) if points == "centroid"
                   else coarse_points(s.mask, np.random.default_rng([seed, i])) for i, s in enumerate(samples)]
        else:
            pts = list(points)
            if len(pts) != len(samples):
                raise IrlibInputError(f"{len(pts)} point arrays for {len(samples)} images; give one per image")
        labels, active = None, None
        if initial == "pal":
            inits = [initial_mask(s.image, p, **pal_options) for s, p in zip(samples, pts)]
            labels = [m.mask.astype(np.float32) for m in inits]
            active = [m.selected for m in inits]
        kind = target if target is not None else ("binary" if initial == "pal" else "soft")
        return cls([s.name for s in samples], [s.image for s in samples], pts, labels=labels,
                   masks=[s.mask for s in samples] if keep_masks else None, active=active, target=kind,
                   keep_snapshots=keep_snapshots)

    @staticmethod
    def _image(a: np.ndarray, name: str) -> np.ndarray:
        a = np.asarray(a, dtype=np.float32)
        if a.ndim != 2 or not np.isfinite(a).all():
            raise IrlibInputError(f"image {name!r}: needs a finite gray (H, W) array, got shape {a.shape}")
        return a

    @staticmethod
    def _points_of(p: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
        p = np.asarray(p, dtype=np.int64).reshape(-1, 2)
        if len(p) and ((p < 0).any() or (p[:, 0] >= shape[0]).any() or (p[:, 1] >= shape[1]).any()):
            raise IrlibInputError(f"image {name!r}: points {p.tolist()} are not all inside its {shape} grid")
        return p

    @staticmethod
    def _label(a: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
        a = np.asarray(a, dtype=np.float32)
        if a.shape != shape or not np.isfinite(a).all() or a.min(initial=0) < 0 or a.max(initial=0) > 1:
            raise IrlibInputError(f"label of {name!r}: needs shape {shape} and values in [0, 1], got shape "
                                  f"{a.shape}; scale uint8 labels by 1/255")
        return a.copy()

    @staticmethod
    def _mask(a: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
        a = np.asarray(a)
        if a.shape != shape:
            raise IrlibInputError(f"mask of {name!r}: shape {a.shape} differs from its image {shape}")
        return a > 0.5 if a.dtype != bool else a.copy()

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.names)

    def image(self, i: int) -> np.ndarray:
        return self._images[i]

    def points(self, i: int) -> np.ndarray:
        return self._points[i].copy()

    def label(self, i: int) -> np.ndarray:
        """A copy of image ``i``'s current label (float32 in [0, 1])."""
        return self._labels[i].copy()

    def mask(self, i: int) -> np.ndarray | None:
        return None if self._masks is None else self._masks[i]

    def target(self, i: int) -> np.ndarray:
        """The training target of image ``i``: the soft label or ``label > threshold`` (bool)."""
        lab = self._labels[i]
        return lab.copy() if self.target_kind == "soft" else lab > self.threshold

    @property
    def active(self) -> np.ndarray:
        """Pool membership, bool (N,) (a copy)."""
        return self._active.copy()

    def active_indices(self) -> list[int]:
        return np.flatnonzero(self._active).tolist()

    def inactive_indices(self) -> list[int]:
        return np.flatnonzero(~self._active).tolist()

    # ------------------------------------------------------------------ changes
    def set_label(self, i: int, label: np.ndarray) -> None:
        """Replace image ``i``'s label (shape of its image, values in [0, 1])."""
        self._labels[i] = self._label(label, self._images[i].shape, self.names[i])

    def admit(self, i: int, label: np.ndarray) -> None:
        """Put image ``i`` into the training pool with ``label``."""
        self.set_label(i, label)
        self._active[i] = True
        self._serve = None

    def record(self, epoch: int | None = None, admitted: int = 0) -> LabelRecord:
        """Append a summary and a snapshot of the current labels (call once per update)."""
        step = len(self._records)
        idx = self.active_indices()
        fg = int(sum(int((self._labels[i] >= self.threshold).sum()) for i in idx))
        rec = LabelRecord(step, epoch, self.pseudo_iou(), len(idx), int(admitted), fg)
        self._records.append(rec)
        self._snapshots[step] = ([_pack(lab) for lab in self._labels], self._active.copy())
        if self.keep_snapshots is not None:
            recent = sorted(s for s in self._snapshots if s > 0)
            for s in recent[:max(len(recent) - self.keep_snapshots, 0)]:
                del self._snapshots[s]
        return rec

    # ------------------------------------------------------------------ history and quality
    @property
    def history(self) -> list[LabelRecord]:
        """One record per update, the initial state first."""
        return list(self._records)

    @property
    def snapshot_steps(self) -> list[int]:
        return sorted(self._snapshots)

    def snapshot(self, step: int = -1) -> LabelSnapshot:
        """The labels after update ``step`` (negative: from the end) as stored (1/255 steps)."""
        n = len(self._records)
        s = step + n if step < 0 else step
        if s not in self._snapshots:
            raise IrlibInputError(f"no snapshot of step {step}; kept: {self.snapshot_steps} (raise "
                                  "keep_snapshots to keep more)")
        packed, active = self._snapshots[s]
        return LabelSnapshot(s, [_unpack(p, a.shape) for p, a in zip(packed, self._images)], active.copy())

    def pseudo_iou(self, threshold: float | None = None, active_only: bool = True) -> float | None:
        """Pooled IoU ``sum(I) / sum(U)`` of ``label >= threshold`` (default 0.5, LESPS's
        ``update_mask >= 0.5``) against the real masks, over the pool (or all images); None without
        masks, nan when both are empty everywhere."""
        if self._masks is None:
            return None
        thr = self.threshold if threshold is None else float(threshold)
        idx = self.active_indices() if active_only else range(len(self))
        inter = union = 0
        for i in idx:
            pred, gt = self._labels[i] >= thr, self._masks[i]
            inter += int((pred & gt).sum())
            union += int((pred | gt).sum())
        return inter / union if union else float("nan")

    # ------------------------------------------------------------------ training
    def serve_index(self, index: int) -> int:
        """The image served at ``index`` by :meth:`training_view` (itself when in the pool)."""
        if self._serve is None:
            pool = self.active_indices()
            if not pool:
                raise IrlibInputError("no image is in the training pool; start with initial='points' or "
                                      "mark some images active")
            serve, r = list(range(len(self))), 0
            for i in self.inactive_indices():
                serve[i], r = pool[r % len(pool)], r + 1
            self._serve = serve
        return self._serve[index]

    def training_view(self) -> "LabelView":
        """A ``Sequence[Sample]`` of the current training targets, for ``SirstTorchDataset``."""
        return LabelView(self)

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        """Everything that evolves (labels, pool, history, snapshots), for a checkpoint."""
        return {"labels": [lab.copy() for lab in self._labels], "active": self._active.copy(),
                "records": [asdict(r) for r in self._records],
                "snapshots": {s: ([(i.copy(), v.copy()) for i, v in p], a.copy())
                              for s, (p, a) in self._snapshots.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (same images, same order)."""
        if len(state["labels"]) != len(self) or len(state["active"]) != len(self):
            raise IrlibInputError(f"state holds {len(state['labels'])} labels for {len(self)} images; "
                                  "load it into the EvolvingLabels it came from")
        self._labels = [self._label(lab, a.shape, nm) for lab, a, nm in zip(state["labels"], self._images, self.names)]
        self._active = np.asarray(state["active"], dtype=bool).copy()
        self._records = [LabelRecord(**r) for r in state["records"]]
        self._snapshots = {int(s): (list(p), np.asarray(a, dtype=bool)) for s, (p, a) in state["snapshots"].items()}
        self._serve = None

    def __repr__(self) -> str:
        return (f"EvolvingLabels({len(self)} images, pool {int(self._active.sum())}, target {self.target_kind}, "
                f"{len(self._records) - 1} updates)")


class LabelView(Sequence[Sample]):
    """The training view of :class:`EvolvingLabels`: ``Sample(name, image, target)`` per index
    (soft targets are float32 masks in [0, 1], binary ones bool)."""

    name = "EvolvingLabels"

    def __init__(self, labels: EvolvingLabels) -> None:
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"LabelView index must be an integer, got {type(index).__name__}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        i = self.labels.serve_index(int(index) % len(self))
        return Sample(self.labels.names[i], self.labels.image(i), self.labels.target(i))


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class EvolutionHook(Hook):
    """Evolve :class:`EvolvingLabels` during :func:`irlib.engine.fit`.

    After epoch ``e`` (1-based, ``e < epochs``) the labels are updated when the start condition
    holds (``e > start_epoch`` and, with ``start_loss``, the epoch's mean loss has once been below
    it) and ``e % every == 0``; with ``update_on_start`` also at the epoch the condition first
    holds (LESPS). An update predicts every pool image at native resolution, applies ``rule``
    (:class:`LespsRule`, :class:`PalRule` or any ``rule(prob, label, points)``), and, when
    ``mining`` (a :class:`PalSchedule`) says so, mines the images outside the pool
    (:func:`irlib.point.pal.mine`). It adds ``label_step``, ``label_iou``, ``label_active`` and
    ``label_admitted`` to the epoch's History row. Resume: save :meth:`state_dict` and
    ``labels.state_dict()`` with the checkpoint and load both.
    """

    def __init__(self, labels: EvolvingLabels, normalize: Normalize, rule: Rule, *, every: int = 5,
                 start_epoch: int = 0, start_loss: float | None = None, update_on_start: bool = False,
                 mining: PalSchedule | None = None, multiple: int = 32) -> None:
        if every < 1 or start_epoch < 0 or multiple < 1:
            raise IrlibInputError(f"EvolutionHook needs every >= 1, start_epoch >= 0, multiple >= 1; got "
                                  f"{every}, {start_epoch}, {multiple}")
        self.labels, self.normalize, self.rule = labels, normalize, rule
        self.every, self.start_epoch, self.start_loss = int(every), int(start_epoch), start_loss
        self.update_on_start, self.mining, self.multiple = update_on_start, mining, int(multiple)
        self.started = False

    @classmethod
    def lesps(cls, labels: EvolvingLabels, normalize: Normalize, *, every: int = 5, start_loss: float | None = 10.0,
              start_epoch: int = 0, rule: Rule | None = None) -> "EvolutionHook":
        """LESPS: first update after the first epoch whose mean loss is below ``start_loss`` (10;
        the code since Jun 2023; ``start_loss=None, start_epoch=T`` is the older epoch trigger),
        then every ``every`` (5) epochs. The code can update twice in one epoch (the start epoch
        being a multiple of 5); here at most once."""
        return cls(labels, normalize, rule or LespsRule(), every=every, start_epoch=start_epoch,
                   start_loss=start_loss, update_on_start=True)

    @classmethod
    def pal(cls, labels: EvolvingLabels, normalize: Normalize, schedule: PalSchedule, *, rule: Rule | None = None,
            mine_pool: bool = True) -> "EvolutionHook":
        """PAL: updates and mining on the epochs of ``schedule``."""
        return cls(labels, normalize, rule or PalRule(), every=schedule.every, start_epoch=int(schedule.begin),
                   mining=schedule if mine_pool else None)

    def due(self, epoch: int, loss: float | None) -> bool:
        """Whether an update is due after ``epoch`` (1-based) epochs; advances the start state."""
        if not self.started:
            if epoch <= self.start_epoch or (self.start_loss is not None and (loss is None or loss >= self.start_loss)):
                return False
            self.started = True
            if self.update_on_start:
                return True
        return epoch % self.every == 0

    def on_epoch_end(self, ctx: EpochContext) -> None:
        n = ctx.epoch + 1
        if n >= ctx.epochs or not self.due(n, ctx.row.get("loss")):
            return
        rec = self.update(ctx.model, n)
        ctx.row.update({"label_step": rec.step, "label_active": rec.active, "label_admitted": rec.admitted})
        if rec.iou is not None:
            ctx.row["label_iou"] = rec.iou

    def update(self, model: nn.Module, epoch: int | None = None) -> LabelRecord:
        """One update now (pool labels, then mining when the schedule says so); its record."""
        device = _device_of(model)
        for i, prob in self._predict(model, self.labels.active_indices(), device):
            self.labels.set_label(i, self.rule(prob, self.labels.label(i), self.labels.points(i)))
        admitted = 0
        if self.mining is not None and epoch is not None and self.mining.mines(epoch):
            lose = self.mining.lose_ratio(epoch)
            for i, prob in self._predict(model, self.labels.inactive_indices(), device):
                mask = mine(prob, self.labels.points(i), lose, self.mining.alarm_ratio)
                if mask is not None:
                    self.labels.admit(i, mask.astype(np.float32))
                    admitted += 1
        return self.labels.record(epoch=epoch, admitted=admitted)

    def _predict(self, model: nn.Module, indices: list[int], device: torch.device
                 ) -> Iterator[tuple[int, np.ndarray]]:
        from irlib.engine.evaluate import iter_predictions

        items = [{"image": self.labels.image(i), "name": self.labels.names[i]} for i in indices]
        with contextlib.closing(iter_predictions(model, items, self.normalize, device, self.multiple)) as stream:
            for i, (_, prob, _) in zip(indices, stream):
                yield i, prob

    def state_dict(self) -> dict[str, Any]:
        """The hook's own state (whether the start condition has been met), for resume."""
        return {"started": self.started}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.started = bool(state["started"])


__all__ = ["EvolutionHook", "EvolvingLabels", "LabelRecord", "LabelSnapshot", "LabelView"]
