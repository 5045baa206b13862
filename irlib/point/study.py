"""The point-supervision comparison of notebook 05: full masks vs LESPS vs PAL vs the bilevel
teacher/student scheme of Yao et al., per host and seed, one recipe for every arm.

Arms (training images with centroid points from :mod:`irlib.data.points`, test split with full masks):

* ``full_mask``: ordinary supervision on the real masks, the recipe's loss;
* ``lesps``: LESPS label evolution from the points (soft labels, focal loss; evolution after the
  first epoch with mean loss below ``lesps_start_loss``, or from ``evolution_start``, then every
  ``evolution_every`` epochs);
* ``pal``: PAL (Canny initial masks, easy-to-hard pool, decayed evolution, binarised targets, the
  recipe's loss: ``fdep_authors``' is PAL's edge-weighted OHEM BCE) on :class:`PalSchedule`;
* ``ours_teacher`` / ``ours_student``: one bilevel run (:mod:`irlib.point.bilevel`) scored twice,
  through the teacher (host + SCAM + frozen VFM) and through the deployed student (the plain host).
  Its labels evolve like PAL's but from the teacher's predictions; a validation split of the
  training images (point-derived pseudo-masks) drives the outer steps.

Every arm sees the same training images and the same point labels (``ours`` splits them into its
inner pool and its validation split); every arm uses the recipe's optimiser, schedule, crops and
epochs; scores are the engine's (native resolution, last epoch, threshold 0.5). Stand-in VFMs are
named in rows and titles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from irlib.data.sample import Sample
from irlib.data.torchdata import SirstTorchDataset
from irlib.engine import experiment as engine_experiment
from irlib.engine.config import StudyConfig, config_from_profile
from irlib.engine.evaluate import evaluate_model
from irlib.engine.experiment import (ExperimentData, RunResult, run_training, scores_text, train_augment,
                                     weights_meta, write_csv)
from irlib.engine.normalize import Normalize
from irlib.engine.objective import SupervisedObjective, recipe_loss
from irlib.engine.recipes import Recipe
from irlib.engine.trainer import Hook, PrintEvery
from irlib.errors import IrlibInputError
from irlib.models import count_params, create_model, save_host
from irlib.point.bilevel import (HYPERGRADIENTS, VAL_FRACTION, BilevelObjective, OuterLoop, TeacherEval,
                                 TeacherForward, ViaTeacher, alpha_of, point_label_split)
from irlib.point.clusters import ClusterTable, ClusterWeights, cluster_descriptors, describe_images
from irlib.point.labels import EvolutionHook, EvolvingLabels
from irlib.point.losses import LespsFocalLoss
from irlib.point.pal import PalSchedule
from irlib.point.scam import ScamTeacher
from irlib.vfm import create_encoder

ARMS = ("full_mask", "lesps", "pal", "ours_teacher", "ours_student")
OURS = ("ours_teacher", "ours_student")
METRICS = ("IoU", "nIoU", "Pd", "Fa_1e-6")


@dataclass
class PointStudyConfig(StudyConfig):
    """Every setting of one comparison (a profile fills what is left as ``None``).

    Data, recipe, seeds and device are :class:`~irlib.engine.config.StudyConfig`'s. ``recipe``
    (``epochs``, ``batch_size``, ``crop_size``, ``lr`` replaced when given) trains every
    arm. Bilevel: ``encoder`` (+ ``encoder_weights``, ``encoder_options``, ``vfm_layers``,
    ``scam_options``) is the frozen VFM; ``val_fraction``/``val_mode`` its validation split (of the
    point-labelled training images, not the engine's);
    ``outer_every``/``outer_steps``/``lr_outer`` (``None``: the recipe's lr, as the release's README
    command)/``hypergradient`` the outer loop; ``pseudo_loss``/``align``/``align_target`` the inner
    loss. ``evolution_start`` (``None``: 0.2 E) and ``evolution_every`` drive PAL's and ours' label
    updates (and LESPS's when ``lesps_start_loss`` is ``None``). ``cluster_test_images`` clusters the
    test images too (the release's transductive choice; irlib's default: training images only).
    """

    hosts: list[str] = field(default_factory=lambda: ["acm", "alcnet"])
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    recipe: str = "fdep_authors"
    head_prior: float | None = None      # the recipe's named deviation (initial foreground probability)
    points: str = "centroid"
    encoder: str = "efficientnet_lite0"
    encoder_weights: str | None = None
    encoder_options: dict[str, Any] = field(default_factory=dict)
    vfm_layers: list[int] | None = None
    scam_options: dict[str, Any] = field(default_factory=dict)
    allow_stand_in: bool = False
    val_fraction: float = VAL_FRACTION
    val_mode: str = "tail"
    outer_every: int = 5
    outer_steps: int = 4
    lr_outer: float | None = None
    hypergradient: str = "first_order"
    pseudo_loss: str = "bce"
    align: str = "mse"
    align_target: str = "student"
    pal_loss: str | None = None
    evolution_start: int | None = None
    evolution_every: int = 5
    lesps_start_loss: float | None = 10.0
    clusters: int | None = None
    cluster_test_images: bool = False
    eval_every: int = 0
    log_every: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = sorted(set(self.arms) - set(ARMS))
        if unknown or not self.arms:
            raise IrlibInputError(f"arms {unknown or self.arms} not understood; choose from {ARMS}")
        if not self.hosts or not self.seeds:
            raise IrlibInputError("give at least one host and one seed")
        if self.hypergradient not in HYPERGRADIENTS:
            raise IrlibInputError(f"hypergradient={self.hypergradient!r}: choose one of {HYPERGRADIENTS}")
        self.arms = sorted(dict.fromkeys(self.arms), key=ARMS.index)
        self.hosts = [str(h).lower() for h in self.hosts]
        self.encoder_options, self.scam_options = dict(self.encoder_options or {}), dict(self.scam_options or {})

    def schedule(self, epochs: int) -> PalSchedule:
        """PAL's (and ours') update schedule for a run of ``epochs`` epochs."""
        return PalSchedule(epochs, start=self.evolution_start, every=self.evolution_every)


#: * ``smoke``: every arm, both hosts, on 8 synthetic 64-px training images (2 of them the
#:   validation split) and 4 test images, 2 epochs, a random tiny CNN as the VFM, labels evolving
#:   after the first epoch, one outer step after the first epoch: a pipeline check (about 10 s of training on one core).
#: * ``demo``: NUAA-SIRST (213 / 214 images) on the CPU, ACM only, EfficientNet-Lite0 ImageNet as the
#:   VFM (a STAND-IN for DINOv3), ``basicirstd`` with the named deviation ``head_prior=0.01`` for 40
#:   epochs (ACM leaves SoftIoU's plateau within ~6 epochs with it, instead of ~75-130); evolution
#:   from epoch 8 (0.2 E) every 3 epochs (LESPS too: its "loss < 10" trigger needs far more epochs),
#:   outer steps every 5 epochs; test curves every 5 epochs. A first demo with ``fdep_authors`` (PAL's
#:   framework: AdamW 1e-3, EEDM loss, zero padding) for 30 epochs left ACM with full masks at IoU 0.
#: * ``paper``: the release's protocol as far as irlib has it: 300 epochs at the release's lr 5e-4,
#:   evolution after epoch 60 every 5, 4 outer steps every 5 epochs, LESPS trigger loss < 10, seed 1,
#:   DINOv2 ViT-S/14 (the nearest VFM irlib has to DINOv3 ViT-S+/16; weights needed), NUAA-SIRST
#:   (SIRST3, the paper's data, is not in irlib's catalog: pass ``dataset=`` a SIRST3 folder).
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": dict(dataset="synthetic", synthetic_train=8, synthetic_test=4, synthetic_size=64, epochs=2,
                  batch_size=4, crop_size=32, encoder="tiny_cnn_random", val_fraction=0.25, outer_every=1,
                  outer_steps=1, evolution_start=0, evolution_every=1, lesps_start_loss=None, eval_every=1,
                  log_every=0),
    "demo": dict(dataset="NUAA-SIRST", hosts=["acm"], recipe="basicirstd", head_prior=0.01, epochs=40,
                 evolution_start=8, evolution_every=3, lesps_start_loss=None, eval_every=5),
    "paper": dict(dataset="NUAA-SIRST", epochs=300, lr=5e-4, encoder="dinov2_vits14", seeds=[1], eval_every=10),
}


def make_config(profile: str | None = None, **overrides: Any) -> PointStudyConfig:
    """Config of ``profile`` (see :data:`PROFILES`) with every non-``None`` override applied."""
    return config_from_profile(PointStudyConfig, PROFILES, profile, overrides, "point-study settings")


# ----------------------------------------------------------------------------- building
def build_encoder(cfg: PointStudyConfig, seed: int = 0) -> nn.Module:
    """The frozen VFM; the ``paper`` profile refuses a stand-in unless ``allow_stand_in``."""
    encoder = create_encoder(cfg.encoder, weights=cfg.encoder_weights, **{"seed": seed, **cfg.encoder_options})
    if cfg.profile == "paper" and encoder.is_stand_in and not cfg.allow_stand_in:
        raise IrlibInputError(f"profile 'paper' runs Yao et al.'s protocol with a DINO VFM, but {cfg.encoder!r} is a "
                              "stand-in; put the DINOv2 checkpoint in $IRLIB_WEIGHTS (or pass encoder_weights), pass "
                              "allow_stand_in=True (results then say so), or use profile 'demo'")
    return encoder


def build_clusters(cfg: PointStudyConfig, samples: Sequence[Sample], test: Sequence[Any]) -> ClusterTable:
    """Clusters of the training images (and the test images with ``cluster_test_images``); labels never read."""
    images = [(s.name, s.image) for s in samples]
    if cfg.cluster_test_images:
        images += [(f"test:{test[i].name}", test[i].image) for i in range(len(test))]
    return cluster_descriptors(describe_images(images), k=cfg.clusters)


def crops(view: Sequence[Sample], recipe: Recipe, normalize: Normalize, seed: int) -> SirstTorchDataset:
    """Random training crops of a label view, the recipe's augmentation, draws from ``seed``."""
    return SirstTorchDataset(view, train=True, crop_size=recipe.crop_size, seed=seed,
                             augment=train_augment(recipe, normalize))


def label_row(labels: EvolvingLabels, prefix: str = "") -> dict[str, Any]:
    """Pseudo-label quality at the start and end, pool size and update count."""
    hist = labels.history
    return {f"{prefix}pseudo_iou_initial": hist[0].iou, f"{prefix}pseudo_iou": hist[-1].iou,
            f"{prefix}pseudo_iou_all": labels.pseudo_iou(active_only=False),
            f"{prefix}pool": int(labels.active.sum()), f"{prefix}images": len(labels),
            f"{prefix}label_updates": len(hist) - 1}


# ----------------------------------------------------------------------------- running
@dataclass
class _Run:
    cfg: PointStudyConfig
    recipe: Recipe
    data: ExperimentData
    samples: list[Sample]
    clusters: ClusterTable | None
    host: str
    seed: int

    def row(self, arm: str) -> dict[str, Any]:
        return {"arm": arm, "host": self.host, "dataset": self.cfg.dataset, "profile": self.cfg.profile,
                "labels": "full masks" if arm == "full_mask" else f"{self.cfg.points} points",
                "encoder": "none", "encoder_is_stand_in": None, "scored": "host"}

    def hooks(self, *extra: Hook) -> list[Hook]:
        return [*extra, *([PrintEvery(self.cfg.log_every)] if self.cfg.log_every else [])]

    def host_model(self) -> nn.Module:
        torch.manual_seed(self.seed)
        return create_model(self.host)

    def train(self, arm: str, model: nn.Module, train: SirstTorchDataset, objective: Any, hooks: list[Hook],
              row: dict[str, Any], deploy: Any = None) -> RunResult:
        return run_training(model, replace(self.data, train=train), self.recipe, seed=self.seed,
                            variant=f"{self.host}/{arm}", objective=objective, deploy=deploy,
                            eval_every=self.cfg.eval_every, device=self.cfg.device, progress=False, row=row,
                            hooks=self.hooks(*hooks))


def run_full_mask(r: _Run) -> RunResult:
    model = r.host_model()
    result = r.train("full_mask", model, r.data.train.with_seed(r.seed), None, [], r.row("full_mask"))
    result.row.update(loss=r.recipe.loss, params=count_params(result.deployed))
    return result


def run_lesps(r: _Run) -> RunResult:
    cfg, norm = r.cfg, r.data.normalize
    labels = EvolvingLabels.from_dataset(r.samples, cfg.points, seed=r.seed, initial="points", keep_snapshots=None)
    start = 0 if cfg.lesps_start_loss is not None else int(cfg.schedule(r.recipe.epochs).begin)
    hook = EvolutionHook.lesps(labels, norm, every=cfg.evolution_every, start_loss=cfg.lesps_start_loss,
                               start_epoch=start)
    model = r.host_model()
    result = r.train("lesps", model, crops(labels.training_view(), r.recipe, norm, r.seed),
                     SupervisedObjective(LespsFocalLoss(), norm), [hook], r.row("lesps"))
    result.row.update(loss="lesps_focal", params=count_params(result.deployed), **label_row(labels))
    result.extra["labels"] = labels
    return result


def run_pal(r: _Run) -> RunResult:
    cfg, norm = r.cfg, r.data.normalize
    labels = EvolvingLabels.from_dataset(r.samples, cfg.points, seed=r.seed, initial="pal", keep_snapshots=None)
    hook = EvolutionHook.pal(labels, norm, cfg.schedule(r.recipe.epochs))
    loss = cfg.pal_loss or r.recipe.loss
    model = r.host_model()
    result = r.train("pal", model, crops(labels.training_view(), r.recipe, norm, r.seed),
                     SupervisedObjective(recipe_loss(r.recipe) if cfg.pal_loss is None else cfg.pal_loss, norm),
                     [hook], r.row("pal"))
    result.row.update(loss=loss, params=count_params(result.deployed), **label_row(labels))
    result.extra["labels"] = labels
    return result


def run_ours(r: _Run) -> list[RunResult]:
    """One bilevel run, scored through the student (deployed host) and the teacher: two results."""
    cfg, norm, recipe = r.cfg, r.data.normalize, r.recipe
    if r.clusters is None:
        raise IrlibInputError("the bilevel arms need the cluster table; build it with build_clusters")
    target = "soft" if cfg.pseudo_loss == "focal" else "binary"
    train_labels, val_labels = point_label_split(r.samples, cfg.val_fraction, cfg.val_mode, r.seed, points=cfg.points,
                                                 target=target)
    host = r.host_model()
    teacher = ScamTeacher(host, build_encoder(cfg, r.seed), vfm_layers=cfg.vfm_layers, **cfg.scam_options)
    weights = ClusterWeights.from_table(r.clusters)
    train = crops(train_labels.training_view(), recipe, norm, r.seed)
    val = crops(val_labels.training_view(), recipe, norm, r.seed)
    objective = BilevelObjective(norm, r.clusters, weights, pseudo_loss=cfg.pseudo_loss, align=cfg.align,
                                 align_target=cfg.align_target)
    outer = OuterLoop(teacher, weights, r.clusters, train, val, norm, every=cfg.outer_every, steps=cfg.outer_steps,
                      batch_size=recipe.batch_size, lr=cfg.lr_outer or recipe.lr, eta=recipe.lr,
                      hypergradient=cfg.hypergradient, seed=r.seed)
    schedule = cfg.schedule(recipe.epochs)
    hooks: list[Hook] = [TeacherEval(r.data.test, norm, cfg.eval_every)] if cfg.eval_every else []
    hooks += [outer, ViaTeacher(EvolutionHook.pal(train_labels, norm, schedule), norm),
              ViaTeacher(EvolutionHook.pal(val_labels, norm, schedule, mine_pool=False), norm, prefix="val_")]
    row = {**r.row("ours_student"), "encoder": cfg.encoder, "encoder_is_stand_in": teacher.is_stand_in,
           "encoder_description": teacher.encoder.description, "hypergradient": cfg.hypergradient,
           "outer": f"{cfg.outer_steps} steps every {cfg.outer_every} epochs", "loss": objective.describe()["pseudo_loss"],
           "align": objective.describe()["align"], "val_images": len(val_labels), "val_mode": cfg.val_mode}
    # the student is the teacher's host: scored in place during training, exported once at the end
    student = r.train("ours_student", teacher, train, objective, hooks, row, deploy=lambda m: m.host)
    student.deployed = teacher.export_student()
    student.row.update(params=count_params(student.deployed), vfm_params=count_params(teacher.encoder),
                       outer_steps=outer.done, alpha_spread=float(np.ptp(alpha_of(weights))),
                       **label_row(train_labels), **label_row(val_labels, "val_"))
    alpha = alpha_of(weights)
    student.extra.update(labels=train_labels, val_labels=val_labels, alpha=alpha)
    scored = evaluate_model(TeacherForward(teacher.eval(), norm), r.data.test, norm, cfg.device, sweep=True,
                            keep=(0, 1, 2, 3))
    t_row = {**student.row, "arm": "ours_teacher", "variant": f"{r.host}/ours_teacher", **scored.row(),
             "scored": f"teacher: host + SCAM + {cfg.encoder}" + (" (stand-in)" if teacher.is_stand_in else ""),
             "params": count_params(teacher, trainable_only=True)}
    t_res = RunResult(f"{r.host}/ours_teacher", r.seed, t_row, student.history, scored, teacher, extra=student.extra)
    student.row["scored"] = "student: host (deployed)"
    return [res for res, arm in ((t_res, "ours_teacher"), (student, "ours_student")) if arm in cfg.arms]


@dataclass
class PointStudy:
    """The runs (one :class:`RunResult` per arm, host and seed), the cluster table and the images."""

    config: PointStudyConfig
    runs: list[RunResult]
    clusters: ClusterTable | None
    images: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    data_label: str = ""
    encoder_is_stand_in: bool | None = None
    encoder_description: str = ""
    normalize: Normalize | None = None

    @property
    def table(self) -> Any:
        return results_table(self.runs)

    @property
    def summary(self) -> Any:
        return summary_table(self.runs)

    @property
    def label_curves(self) -> Any:
        return label_curves(self.runs)

    @property
    def eval_curves(self) -> Any:
        return eval_curves(self.runs)


def run_study(cfg: PointStudyConfig) -> PointStudy:
    """Every arm for every host and seed (arms inner), on one data load and one cluster table."""
    recipe = cfg.training_recipe()
    data = engine_experiment.load_data(cfg.data_settings(), recipe, cfg.seeds[0])
    data = replace(data, test=[data.test[i] for i in range(len(data.test))])  # read once, scored many times
    base = data.train.base
    samples = [base[i] for i in range(len(base))]
    ours = any(a in OURS for a in cfg.arms)
    clusters, stand_in, description = None, None, ""
    if ours:
        encoder = build_encoder(cfg)
        stand_in, description = bool(encoder.is_stand_in), encoder.description
        clusters = build_clusters(cfg, samples, data.test)
    runs: list[RunResult] = []
    for seed in cfg.seeds:
        for host in cfg.hosts:
            r = _Run(cfg, recipe, data, samples, clusters, host, seed)
            for arm in [a for a in cfg.arms if a not in OURS] + (["ours"] if ours else []):
                t0 = time.perf_counter()
                got = {"full_mask": run_full_mask, "lesps": run_lesps, "pal": run_pal}[arm](r) if arm != "ours" \
                    else run_ours(r)
                for res in got if isinstance(got, list) else [got]:
                    res.row["wall_time_s"] = round(time.perf_counter() - t0, 1)
                    w = res.row
                    print(f"{host:7s} {w['arm']:13s} seed {seed}: {scores_text(w)}  pseudo-label IoU "
                          f"{_fmt(w.get('pseudo_iou'))}  ({w['train_time_s']} s)", flush=True)
                    runs.append(res)
    label = f"{cfg.dataset} ({len(samples)} train / {len(data.test)} test images)"
    return PointStudy(cfg, runs, clusters, {s.name: s.image for s in samples}, {s.name: s.mask for s in samples},
                      label, stand_in, description, data.normalize)


def _fmt(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{100 * v:.1f}%"


# ----------------------------------------------------------------------------- tables and files
TABLE_COLUMNS = ("host", "arm", "seed", "labels", "scored", "encoder", "encoder_is_stand_in", "IoU", "nIoU", "Pd",
                 "Fa_1e-6", "pseudo_iou_initial", "pseudo_iou", "pool", "params", "vfm_params", "train_time_s",
                 "epochs")


def results_table(runs: Sequence[RunResult]) -> Any:
    """One row per run (IoU / nIoU / Pd in percent, Fa in 1e-6, pseudo-label IoU a fraction)."""
    import pandas as pd

    return pd.DataFrame([{k: r.row.get(k) for k in TABLE_COLUMNS} for r in runs], columns=list(TABLE_COLUMNS))


def summary_table(runs: Sequence[RunResult]) -> Any:
    """Mean and sample std over seeds per host and arm (std NaN for one seed)."""
    import pandas as pd

    frame = results_table(runs)
    frame["pseudo_iou"] = pd.to_numeric(frame["pseudo_iou"], errors="coerce") * 100
    cols = [*METRICS, "pseudo_iou"]
    grouped = frame.groupby(["host", "arm"], sort=False)
    out = grouped[cols].mean().add_suffix("_mean").join(grouped[cols].std(ddof=1).add_suffix("_std"))
    out.insert(0, "seeds", grouped.size())
    return out.reset_index()


def label_curves(runs: Sequence[RunResult]) -> Any:
    """Pseudo-label IoU (pool, vs the real masks) after every update: host, arm, seed, step, epoch, ..."""
    import pandas as pd

    rows = []
    for r in runs:
        labels = r.extra.get("labels")
        if labels is None or r.row.get("arm") == "ours_teacher":   # the teacher shares the student's labels
            continue
        arm = "ours" if r.row["arm"] == "ours_student" else r.row["arm"]
        for rec in labels.history:
            rows.append({"host": r.row["host"], "arm": arm, "seed": r.seed, "step": rec.step, "epoch": rec.epoch,
                         "pseudo_iou": rec.iou, "pool": rec.active, "admitted": rec.admitted})
    return pd.DataFrame(rows, columns=["host", "arm", "seed", "step", "epoch", "pseudo_iou", "pool", "admitted"])


def eval_curves(runs: Sequence[RunResult]) -> Any:
    """Test scores every ``eval_every`` epochs: the engine's ``eval_*`` (the deployed model) and, for
    the bilevel run, ``teacher_eval_*``: host, arm, seed, epoch, IoU, nIoU, Pd, Fa."""
    import pandas as pd

    rows = []
    for r in runs:
        arm = r.row["arm"]
        prefix = "teacher_eval_" if arm == "ours_teacher" else "eval_"
        for h in r.history.rows:
            if f"{prefix}IoU" in h:
                rows.append({"host": r.row["host"], "arm": arm, "seed": r.seed, "epoch": h["epoch"],
                             **{m: h.get(prefix + m) for m in METRICS}})
    return pd.DataFrame(rows, columns=["host", "arm", "seed", "epoch", *METRICS])


def encoder_label(study: PointStudy) -> str:
    """The VFM's name, with "STAND-IN" when it is not a foundation model."""
    cfg = study.config
    return f"{cfg.encoder} (STAND-IN for DINOv3)" if study.encoder_is_stand_in else cfg.encoder


def study_title(study: PointStudy) -> str:
    """Data, labels, hosts, VFM (stand-in named), recipe, bilevel settings and profile, for tables and figures."""
    cfg, recipe = study.config, study.config.training_recipe()
    vfm = f" | VFM {encoder_label(study)}" if study.encoder_is_stand_in is not None else ""
    return (f"Point supervision ({cfg.points} points) on {study.data_label or cfg.dataset} | hosts "
            f"{', '.join(h.upper() for h in cfg.hosts)}{vfm} | recipe {recipe.name}: {recipe.epochs} ep, batch "
            f"{recipe.batch_size}, crop {recipe.crop_size}, lr {recipe.lr:g} | outer {cfg.outer_steps} steps / "
            f"{cfg.outer_every} ep ({cfg.hypergradient}) | profile {cfg.profile}")


def results_stem(cfg: PointStudyConfig) -> str:
    """``point_<dataset>_<profile>``, the file name of a study's results."""
    return f"point_{cfg.dataset}_{cfg.profile}".replace("/", "-")


def provenance(cfg: PointStudyConfig) -> dict[str, Any]:
    """Parameters, recipe, seeds, versions and commit; take it before training."""
    return cfg.provenance()


def write_results(study: PointStudy, out_dir: str | Path, metadata: dict[str, Any] | None = None,
                  weights: bool = False) -> dict[str, Path]:
    """``<stem>.csv`` / ``.json`` (rows, summary, histories, provenance) and ``<stem>_clusters.csv``,
    ``_label_curves.csv``, ``_eval_curves.csv`` into ``out_dir``, atomically. With ``weights`` every
    deployed host (all arms but the teacher) also goes to ``weights/<stem>_<host>_<arm>_seed<s>.pt``
    (:func:`irlib.models.save_host`, with its normalisation in the meta, so ``irlib predict`` and the
    cross-dataset table read it as they are)."""
    out = Path(out_dir)
    stem = results_stem(study.config)
    meta = {**(metadata or provenance(study.config)), "data_label": study.data_label, "title": study_title(study),
            "encoder_is_stand_in": study.encoder_is_stand_in, "encoder_description": study.encoder_description}
    paths = engine_experiment.write_results(stem, study.runs, out, meta)
    for key, frame in (("label_curves", study.label_curves), ("eval_curves", study.eval_curves)):
        paths[key] = write_csv(out / f"{stem}_{key}.csv", frame)
    if study.clusters is not None:
        paths["clusters"] = study.clusters.to_csv(out / f"{stem}_clusters.csv")
    if weights:
        for r in study.runs:
            if r.row["arm"] == "ours_teacher":
                continue
            name = f"{stem}_{r.row['host']}_{r.row['arm']}_seed{r.seed}"
            host_meta = weights_meta(study.normalize, study.config.dataset, r.seed, meta, arm=r.row["arm"],
                                     recipe=r.row.get("recipe"), epochs=r.row.get("epochs"),
                                     deviations=r.row.get("deviations"))
            paths[f"weights_{name}"] = save_host(r.deployed.cpu(), out / "weights" / f"{name}.pt", meta=host_meta)
    return paths


__all__ = ["ARMS", "PROFILES", "PointStudy", "PointStudyConfig", "TABLE_COLUMNS", "build_clusters", "build_encoder",
           "encoder_label", "eval_curves", "label_curves", "make_config", "provenance", "results_stem",
           "results_table", "run_full_mask", "run_lesps", "run_ours", "run_pal", "run_study", "study_title",
           "summary_table", "write_results"]
