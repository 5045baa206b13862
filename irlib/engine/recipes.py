"""Named training recipes: every optimisation and data-pipeline setting of a published protocol.

A :class:`Recipe` is a small frozen dataclass; results files record its name and its content
(``recipe.to_dict()``). ``get_recipe("basicirstd", epochs=100)`` gives a copy with fields replaced.
Deliberate deviations from a protocol (a prior bias on the head, a BCE warm-up) are fields of their
own, off in the faithful recipes, so a result always says which were used.

Recipes:

* ``basicirstd``: BasicIRSTD's ``train.py`` default branch at commit b75ecc8 (the code of its
  July-2023 benchmark logs), as listed in ``../shared/papers/basicirstd.md``.
* ``dnanet``: BasicIRSTD's DNANet branch (``--optimizer_name Adagrad``): Adagrad 0.05,
  CosineAnnealingLR to 1e-5 over 1500 epochs, stepped once per epoch, same data pipeline.
* ``fdep_authors``: the FDEP authors' base framework (PAL ``train_model.py``) as far as it can be
  established: AdamW 1e-3, no schedule, AMP, batch 16, 400 epochs, random 256 crops zero-padded,
  EEDM loss. Their photometric / rotation augmentations are not reproduced (flips and transpose
  only) and AdamW's weight decay is PyTorch's default 0.01 (PAL passes none): both recorded here.
* ``cpu_demo``: the CPU-budget recipe of the FDEP demo profile (AdamW 1e-3, weight decay 1e-4,
  batch 4 of 128 crops, no schedule, SoftIoU): more optimiser steps per unit of compute.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from irlib.errors import IrlibInputError

OPTIMIZERS = ("adam", "adamw", "adagrad", "sgd")
SCHEDULES = ("constant", "multistep", "cosine", "poly")


@dataclass(frozen=True)
class Recipe:
    """Everything :func:`irlib.engine.fit` and the experiment layer need to train a host.

    Optimisation:
        optimizer: ``adam``, ``adamw``, ``adagrad`` or ``sgd``; ``lr``; ``weight_decay``;
        ``momentum`` (sgd); ``no_decay_norm_bias``: parameter groups without weight decay for
        biases, normalisation weights and embeddings/queries/tokens (any 0-d/1-d parameter and any
        parameter whose name contains ``embed``, ``query``, ``token``).
    Schedule (a factor on ``lr`` as a function of the epoch ``t``):
        ``schedule``: ``constant``; ``multistep`` (``gamma ** #{m in milestones: t >= m}``);
        ``cosine`` (from 1 to ``min_lr / lr`` over ``cosine_epochs`` or ``epochs``); ``poly``
        (``(1 - t / epochs) ** poly_power``). ``warmup_epochs`` > 0 ramps linearly from
        ``warmup_start`` first. ``step_per="epoch"`` holds the lr constant within an epoch
        (PyTorch's scheduler stepped once per epoch, as BasicIRSTD does); ``"step"`` updates it
        after every optimiser step.
    Loop:
        ``epochs``, ``batch_size``; ``drop_last`` drops the last incomplete batch;
        ``skip_singleton_batch`` skips a batch of one image (BasicIRSTD: BatchNorm cannot train on
        it); ``grad_clip`` (max gradient norm); ``amp`` (mixed precision on CUDA, bfloat16).
    Data:
        ``crop_size``; ``pos_prob`` (BasicIRSTD's target-biased crop, ``None`` = uniform);
        ``pad`` (``"mean"``: images smaller than the crop are padded with the normalisation mean,
        i.e. 0 after normalisation; ``"zero"``: raw black); ``normalization`` (``"reference"``:
        BasicIRSTD's fixed per-dataset constants; ``"measured"``: the train split's per-image
        averaged mean/std); ``hflip``, ``vflip``, ``transpose``; ``scale_range`` (SimIR's scale
        jitter before the crop, see :class:`irlib.data.JointAugment`; ``None`` = off).
    Loss:
        ``loss`` (see :func:`irlib.engine.build_loss`).
    Named deviations (off in the faithful recipes):
        ``head_prior``: initial foreground probability ``p`` of the output layer (bias
        ``log(p / (1 - p))``; ``None`` keeps PyTorch's initialisation). ``warmup_loss`` used
        instead of ``loss`` for the first ``warmup_loss_epochs`` epochs.
    """

    name: str = "custom"
    optimizer: str = "adamw"
    lr: float = 5e-4
    weight_decay: float = 1e-4
    momentum: float = 0.9
    no_decay_norm_bias: bool = False
    schedule: str = "constant"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    cosine_epochs: int | None = None
    min_lr: float = 0.0
    poly_power: float = 0.9
    warmup_epochs: float = 0.0
    warmup_start: float = 0.001
    step_per: str = "step"
    epochs: int = 1
    batch_size: int = 8
    drop_last: bool = True
    skip_singleton_batch: bool = False
    grad_clip: float | None = None
    amp: bool = False
    crop_size: int = 256
    pos_prob: float | None = None
    pad: str = "mean"
    normalization: str = "measured"
    hflip: bool = True
    vflip: bool = True
    transpose: bool = True
    scale_range: tuple[float, float] | None = None
    loss: str = "softiou"
    head_prior: float | None = None
    warmup_loss: str | None = None
    warmup_loss_epochs: int = 0
    notes: str = ""

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise IrlibInputError(f"recipe {self.name!r}: optimizer {self.optimizer!r} not in {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise IrlibInputError(f"recipe {self.name!r}: schedule {self.schedule!r} not in {SCHEDULES}")
        if self.step_per not in ("epoch", "step"):
            raise IrlibInputError(f"recipe {self.name!r}: step_per must be 'epoch' or 'step'")
        if self.pad not in ("mean", "zero"):
            raise IrlibInputError(f"recipe {self.name!r}: pad must be 'mean' or 'zero'")
        if self.normalization not in ("reference", "measured"):
            raise IrlibInputError(f"recipe {self.name!r}: normalization must be 'reference' or 'measured'")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise IrlibInputError(f"recipe {self.name!r}: epochs, batch_size and lr must be positive")
        if self.head_prior is not None and not 0.0 < self.head_prior < 1.0:
            raise IrlibInputError(f"recipe {self.name!r}: head_prior must be in (0, 1), got {self.head_prior}")
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        if self.scale_range is not None:
            object.__setattr__(self, "scale_range", tuple(float(v) for v in self.scale_range))

    def replace(self, **changes: Any) -> "Recipe":
        """A copy with ``changes`` applied (unknown names raise)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise IrlibInputError(f"unknown recipe fields {unknown}; known: {sorted(known)}")
        return replace(self, **changes)

    @property
    def deviations(self) -> dict[str, Any]:
        """The named deviations switched on (empty for a faithful recipe)."""
        out: dict[str, Any] = {}
        if self.head_prior is not None:
            out["head_prior"] = self.head_prior
        if self.warmup_loss is not None and self.warmup_loss_epochs > 0:
            out["warmup_loss"] = f"{self.warmup_loss} for {self.warmup_loss_epochs} epochs"
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        d["scale_range"] = None if self.scale_range is None else list(self.scale_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Recipe":
        return cls(**{**d, "milestones": tuple(d.get("milestones", ()))})


RECIPES: dict[str, Recipe] = {
    "basicirstd": Recipe(
        name="basicirstd", optimizer="adam", lr=5e-4, weight_decay=0.0, schedule="multistep",
        milestones=(200, 300), gamma=0.1, step_per="epoch", epochs=400, batch_size=16, drop_last=False,
        skip_singleton_batch=True, crop_size=256, pos_prob=0.5, pad="mean", normalization="reference",
        loss="softiou",
        notes="BasicIRSTD train.py default (Adam) branch at commit b75ecc8: Adam 5e-4 without weight decay, "
              "MultiStepLR [200, 300] gamma 0.1 per epoch, 400 epochs, batch 16 (last partial batch kept, "
              "a batch of 1 skipped), random 256 crops with pos_prob 0.5, pad with the mean, fixed dataset "
              "constants, flips + transpose, SoftIoU pooled over the batch"),
    "dnanet": Recipe(
        name="dnanet", optimizer="adagrad", lr=0.05, weight_decay=0.0, schedule="cosine", min_lr=1e-5,
        step_per="epoch", epochs=1500, batch_size=16, drop_last=False, skip_singleton_batch=True,
        crop_size=256, pos_prob=0.5, pad="mean", normalization="reference", loss="softiou",
        notes="BasicIRSTD's DNANet branch (--optimizer_name Adagrad): Adagrad 0.05, CosineAnnealingLR "
              "T_max = epochs (1500), eta_min 1e-5, per epoch; data pipeline as basicirstd"),
    "fdep_authors": Recipe(
        name="fdep_authors", optimizer="adamw", lr=1e-3, weight_decay=0.01, schedule="constant",
        epochs=400, batch_size=16, drop_last=False, skip_singleton_batch=True, amp=True, crop_size=256,
        pos_prob=None, pad="zero", normalization="measured", loss="edge_bce_ohem",
        notes="FDEP authors' base framework (PAL train_model.py) as far as established: AdamW 1e-3, no "
              "scheduler, AMP, batch 16, 400 epochs, random 256 crops zero-padded, EEDM loss. Not reproduced: "
              "their SomeOf photometric/rotation augmentation (flips + transpose only). weight_decay 0.01 is "
              "PyTorch's AdamW default (PAL passes none)"),
    "simir": Recipe(
        name="simir", optimizer="adamw", lr=1e-4, weight_decay=0.1, no_decay_norm_bias=True, schedule="cosine",
        min_lr=1e-6, warmup_epochs=0.4, warmup_start=0.001, step_per="step", epochs=360, batch_size=8,
        drop_last=False, grad_clip=0.01, amp=True, crop_size=256, pos_prob=None, pad="mean",
        normalization="measured", hflip=True, vflip=False, transpose=False, scale_range=(0.1, 2.0), loss="simir",
        notes="SimIR configs/repvit.yaml (NUAA): AdamW 1e-4, weight decay 0.1 except norms/embeddings, "
              "WarmupCosineLR to 1e-6 (10 warm-up iterations = 0.4 epoch of 27 steps), gradient-norm clip 0.01, "
              "AMP, batch 8, horizontal flip, ResizeScale(0.1, 2.0) + FixedSizeCrop(256) padded with mean gray "
              "and mask 0; 9600 iterations = 360 epochs of the 213-image 50:50 split. Deviations: irlib's "
              "1-channel input with the dataset's measured mean/std (released: RGB ImageNet constants), "
              "dense BCE + Dice (released: point-sampled, SimIRLoss(points=12544))"),
    "simir_cpu": Recipe(
        name="simir_cpu", optimizer="adamw", lr=1e-3, weight_decay=0.1, no_decay_norm_bias=True, schedule="cosine",
        min_lr=1e-6, warmup_epochs=1.0, warmup_start=0.001, step_per="step", epochs=30, batch_size=8,
        drop_last=True, grad_clip=1.0, crop_size=128, pos_prob=0.5, pad="mean", normalization="measured",
        hflip=True, vflip=True, transpose=True, loss="simir",
        notes="irlib's CPU-budget SimIR recipe (not the paper's): the simir recipe's optimiser family with lr 1e-3 "
              "and clip 1.0 for a 30-epoch run, 128 crops with BasicIRSTD's target-biased rule instead of scale "
              "jitter (targets survive), dihedral flips"),
    "cpu_demo": Recipe(
        name="cpu_demo", optimizer="adamw", lr=1e-3, weight_decay=1e-4, schedule="constant", epochs=20,
        batch_size=4, drop_last=True, crop_size=128, pos_prob=None, pad="zero", normalization="measured",
        loss="softiou",
        notes="CPU budget recipe of the FDEP demo profile: batch 4 of 128 crops for more optimiser steps per "
              "unit of compute; not a published protocol"),
}


def list_recipes() -> list[str]:
    return sorted(RECIPES)


def get_recipe(recipe: "str | Recipe | None" = None, **changes: Any) -> Recipe:
    """A recipe by name (or a :class:`Recipe`, or ``None`` for the plain ``Recipe()``), with
    every change that is not ``None`` applied."""
    if recipe is None:
        base = Recipe()
    elif isinstance(recipe, Recipe):
        base = recipe
    else:
        key = str(recipe).lower()
        if key not in RECIPES:
            raise IrlibInputError(f"unknown recipe {recipe!r}; choose one of {list_recipes()}")
        base = RECIPES[key]
    changes = {k: v for k, v in changes.items() if v is not None}
    return base.replace(**changes) if changes else base
