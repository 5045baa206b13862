"""SimIR's distillation comparison (notebook 04): does the distilled student beat its teacher here?

Arms, all trained with one recipe and seed on the same data and scored on the last epoch:

* ``student_scratch``: the student (``simir_tiny`` on CPU, ``simir`` in the paper profile) from
  random initialisation;
* ``student_distilled``: stage 1 (:mod:`irlib.simir.distill`: the student's features regress the
  frozen teacher encoder's on the training images plus synthetic ones, never test images), then
  stage 2, the same fine-tuning as ``student_scratch``;
* ``teacher_finetuned``: the teacher encoder fully fine-tuned under segment-anything's decoder
  (notebook 01's probe, ``finetune`` mode): the "fine-tuned teacher" the paper compares with;
* ``acm``: the ACM host under the same recipe, the host baseline at this budget.

The faithful 400-epoch ACM baseline (``results/baselines``) is shown next to these in the notebook,
labelled with its own recipe; it is not one of these arms.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from irlib import data as irdata
from irlib.data.torchdata import SirstTorchDataset
from irlib.engine import experiment as engine_experiment
from irlib.engine.config import StudyConfig, config_from_profile
from irlib.engine.experiment import ExperimentData, RunResult, run_training, scores_text, train_augment
from irlib.engine.objective import recipe_loss
from irlib.engine.recipes import Recipe
from irlib.engine.trainer import History, PrintEvery, fit
from irlib.errors import IrlibInputError
from irlib.models import count_params, create_model
from irlib.simir.distill import DistillObjective, FeatureDistiller, unlabelled_images
from irlib.simir.probe import ProbeObjective
from irlib.simir.probing import ProbeVariant, build_encoder, build_probe, cpu_latency_ms

ARMS = ("student_scratch", "student_distilled", "teacher_finetuned", "acm")


@dataclass
class DistillStudyConfig(StudyConfig):
    """Every setting of one comparison (a profile fills what is left as ``None``).

    Data, recipe, seeds and device are :class:`~irlib.engine.config.StudyConfig`'s. ``recipe``
    (with ``epochs``, ``batch_size``, ``crop_size``, ``lr`` replaced when given) trains every arm;
    ``teacher_lr`` replaces the lr for the teacher only (a pretrained encoder under a
    fresh decoder may need a smaller one). Stage 1 uses the same recipe with ``stage1_epochs``,
    ``stage1_lr`` and the images of the training split plus ``stage1_synthetic`` synthetic ones.
    ``output_kd_weight`` > 0 adds output-level distillation from the fine-tuned teacher in stage 1.
    """

    student: str = "simir_tiny"
    student_options: dict[str, Any] = field(default_factory=dict)
    teacher: str = "efficientnet_lite0"
    teacher_weights: str | None = None
    recipe: str = "simir_cpu"
    teacher_lr: float | None = None
    stage1_epochs: int = 20
    stage1_lr: float = 1e-3
    stage1_synthetic: int = 0
    output_kd_weight: float = 0.0
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    eval_every: int = 0
    latency_runs: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = sorted(set(self.arms) - set(ARMS))
        if unknown or not self.arms:
            raise IrlibInputError(f"arms {unknown or self.arms} not understood; choose from {ARMS}")
        if self.output_kd_weight > 0 and "teacher_finetuned" not in self.arms:
            raise IrlibInputError("output_kd_weight > 0 distils the fine-tuned teacher: keep 'teacher_finetuned' "
                                  "in arms")
        self.arms = sorted(self.arms, key=ARMS.index)
        if self.output_kd_weight > 0:      # the teacher must be trained before it is distilled
            self.arms.remove("teacher_finetuned")
            self.arms.insert(0, "teacher_finetuned")


#: * ``smoke``: every arm on a few synthetic 64-pixel images for 2 epochs (a pipeline check).
#: * ``demo``: NUAA-SIRST on the CPU: ``simir_tiny`` (irlib's CPU configuration), EfficientNet-Lite0
#:   ImageNet as the teacher (a stand-in for Semantic-SAM), ``simir_cpu`` recipe, 20 epochs (the
#:   teacher at lr 1e-4, as notebook 01's probes), stage 1 15 epochs on the 213 training images +
#:   100 synthetic ones. About an hour on one core.
#: * ``paper``: the released student (``simir``), SAM ViT-B as the teacher (weights needed), the
#:   ``simir`` recipe; stage 1 60 epochs with 1000 synthetic images (the paper's distillation data
#:   and schedule are unavailable: irlib's choice).
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": dict(dataset="synthetic", synthetic_train=8, synthetic_test=4, synthetic_size=64, epochs=2,
                  batch_size=4, crop_size=64, stage1_epochs=2, stage1_synthetic=4, latency_runs=1,
                  student_options=dict(dim=32, ffn_dim=64, decoder_mlp_dim=64, dense_ffn_dim=32),
                  teacher="tiny_cnn_random"),
    "demo": dict(dataset="NUAA-SIRST", epochs=20, stage1_epochs=15, stage1_synthetic=100, teacher_lr=1e-4),
    "paper": dict(dataset="NUAA-SIRST", student="simir", teacher="sam_vit_b", recipe="simir", stage1_epochs=60,
                  stage1_synthetic=1000, latency_runs=3),
}


def make_config(profile: str | None = None, **overrides: Any) -> DistillStudyConfig:
    """Config of ``profile`` with every non-``None`` override applied."""
    return config_from_profile(DistillStudyConfig, PROFILES, profile, overrides)


def stage1_images(cfg: DistillStudyConfig, data: ExperimentData, recipe: Recipe, seed: int) -> SirstTorchDataset:
    """Training-split images plus ``stage1_synthetic`` synthetic ones, cropped as the recipe says."""
    synthetic = None
    if cfg.stage1_synthetic > 0:
        size = cfg.synthetic_size if cfg.dataset == "synthetic" else 256
        synthetic = irdata.SyntheticSirst(cfg.stage1_synthetic, size=size, seed=10_000 + seed)
    images = unlabelled_images(data.train.base, synthetic)
    return SirstTorchDataset(images, train=True, crop_size=recipe.crop_size, seed=seed,
                             augment=train_augment(recipe, data.normalize))


def distil_stage1(cfg: DistillStudyConfig, student: nn.Module, data: ExperimentData, recipe: Recipe, seed: int,
                  output_teacher: Any = None) -> tuple[History, float, bool]:
    """Stage 1 on ``student`` in place; returns its history, wall time and whether the teacher is a stand-in."""
    teacher = build_encoder(ProbeVariant(cfg.teacher, cfg.teacher_weights, "frozen"), seed)
    distiller = FeatureDistiller(student, teacher)
    objective = DistillObjective(data.normalize, output_teacher, cfg.output_kd_weight)
    t0 = time.perf_counter()
    history = fit(distiller, stage1_images(cfg, data, recipe, seed), recipe, normalize=data.normalize,
                  objective=objective, device=cfg.device, seed=seed, progress=False, hooks=[PrintEvery(10)],
                  epochs=cfg.stage1_epochs, lr=cfg.stage1_lr)
    return history, time.perf_counter() - t0, bool(teacher.is_stand_in)


def run_arm(cfg: DistillStudyConfig, arm: str, seed: int, data: ExperimentData,
            teachers: dict[int, nn.Module]) -> RunResult:
    """Train and score one arm with ``seed``."""
    recipe = cfg.training_recipe()
    data = replace(data, train=data.train.with_seed(seed))
    row: dict[str, Any] = {"arm": arm, "dataset": cfg.dataset, "profile": cfg.profile, "teacher": cfg.teacher}
    objective = None
    stage1_time = 0.0
    stage1_rows: list[dict[str, Any]] = []
    torch.manual_seed(seed)
    if arm == "teacher_finetuned":
        model = build_probe(ProbeVariant(cfg.teacher, cfg.teacher_weights, "finetune"), seed, data.normalize)
        recipe = recipe.replace(lr=cfg.teacher_lr) if cfg.teacher_lr else recipe
        objective = ProbeObjective(recipe_loss(recipe))
        row.update(model_name=f"probe({cfg.teacher}, finetune)", stand_in=bool(model.is_stand_in))
    elif arm == "acm":
        model = create_model("acm")
        row.update(model_name="acm", stand_in=False)
    else:
        model = create_model(cfg.student, **cfg.student_options)
        row.update(model_name=cfg.student, stand_in=False)
        if arm == "student_distilled":
            kd = None
            if cfg.output_kd_weight > 0:
                probe = teachers[seed].eval()
                kd = lambda raw, x: probe.forward_raw(raw)          # noqa: E731
            hist1, stage1_time, teacher_stand_in = distil_stage1(cfg, model, data, recipe, seed, kd)
            row.update(stage1_epochs=cfg.stage1_epochs, stage1_final_feat_loss=round(hist1.losses[-1], 5),
                       teacher_stand_in=teacher_stand_in)
            stage1_rows = hist1.rows
    result = run_training(model, data, recipe, seed=seed, variant=arm, objective=objective,
                          eval_every=cfg.eval_every, device=cfg.device, progress=False, row=row,
                          hooks=[PrintEvery(10)])
    result.extra["stage1_history"] = stage1_rows
    if arm == "teacher_finetuned":
        teachers[seed] = model
    model.zero_grad(set_to_none=True)
    result.row.update(stage1_time_s=round(stage1_time, 1), params=count_params(result.deployed),
                      cpu_latency_ms_256=round(cpu_latency_ms(result.deployed, 256, cfg.latency_runs), 2),
                      latency_threads=torch.get_num_threads())
    return result


@dataclass
class DistillStudy:
    config: DistillStudyConfig
    runs: list[RunResult]
    data_label: str = ""

    @property
    def table(self) -> Any:
        import pandas as pd
        cols = ["arm", "seed", "model_name", "stand_in", "IoU", "nIoU", "Pd", "Fa_1e-6", "HSE", "params",
                "cpu_latency_ms_256", "train_time_s", "stage1_time_s"]
        frame = pd.DataFrame([r.row for r in self.runs])
        return frame[[c for c in cols if c in frame.columns]]


def run_study(cfg: DistillStudyConfig) -> DistillStudy:
    """Every arm for every seed (arms inner), on one data load."""
    recipe = cfg.training_recipe()
    data = engine_experiment.load_data(cfg.data_settings(), recipe, cfg.seeds[0])
    runs, teachers = [], {}
    for seed in cfg.seeds:
        for arm in cfg.arms:
            run = run_arm(cfg, arm, seed, data, teachers)
            r = run.row
            print(f"{arm:20s} seed {seed}: {scores_text(r)}  ({r['train_time_s']} s + stage 1 {r['stage1_time_s']} s)",
                  flush=True)
            runs.append(run)
    return DistillStudy(cfg, runs, data.label)


def study_title(study: DistillStudy) -> str:
    """Data, student, teacher (stand-in named), recipe and profile, for tables and figures."""
    cfg, recipe = study.config, study.config.training_recipe()
    stand_in = any(r.row.get("stand_in") or r.row.get("teacher_stand_in") for r in study.runs)
    teacher = (f"{cfg.teacher} (STAND-IN for Semantic-SAM)" if stand_in
               else f"{cfg.teacher} (the paper's teacher is Semantic-SAM)")
    return (f"SimIR distillation on {study.data_label or cfg.dataset} | student {cfg.student}, teacher {teacher} | "
            f"recipe {recipe.name}: {recipe.epochs} ep, crop {recipe.crop_size}, lr {recipe.lr:g} | "
            f"stage 1 {cfg.stage1_epochs} ep | profile {cfg.profile}")


def provenance(cfg: DistillStudyConfig) -> dict[str, Any]:
    """Parameters, recipe, seeds, versions and commit; take it before training."""
    return cfg.provenance()


def write_results(study: DistillStudy, out_dir: str | Path, metadata: dict[str, Any] | None = None) -> dict[str, Path]:
    """``distill_<dataset>_<profile>.csv`` / ``.json`` (rows, histories, provenance) into ``out_dir``."""
    stem = f"distill_{study.config.dataset}_{study.config.profile}".replace("/", "-")
    meta = {**(metadata or provenance(study.config)), "data_label": study.data_label, "title": study_title(study),
            "stage1_histories": {f"{r.variant}_seed{r.seed}": r.extra.get("stage1_history", [])
                                 for r in study.runs if r.extra.get("stage1_history")}}
    return engine_experiment.write_results(stem, study.runs, out_dir, meta)


__all__ = ["ARMS", "DistillStudy", "DistillStudyConfig", "PROFILES", "distil_stage1", "make_config", "provenance",
           "run_arm", "run_study", "stage1_images", "study_title", "write_results"]
