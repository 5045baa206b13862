"""SimIR's probing study (section 1 of the paper notes): how well generic encoders segment IRSTD
targets under SAM's mask decoder, frozen or fine-tuned, and how much they overfit.

For each :class:`ProbeVariant` (encoder, weights, mode) a :class:`~irlib.simir.probe.ProbeSegmenter`
is trained with one recipe through :func:`irlib.engine.experiment.run_training` and scored by
the engine's evaluation (last epoch, native resolution). Every ``curve_every`` epochs the model
is scored on the training images (native size, not crops) and on the test images: the
train-vs-test IoU curves. Results: one row per variant and seed (:func:`results_table`), the
curves in tidy form (:func:`curves_table`), and ``<stem>.csv`` / ``.json`` / ``_curves.csv``
with provenance (:func:`write_results`).
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from irlib.engine import experiment as engine_experiment
from irlib.engine.config import StudyConfig, config_from_profile
from irlib.engine.evaluate import evaluate_model
from irlib.engine.experiment import (ExperimentData, RunResult, first_items, run_training, scores_text,
                                    write_csv)
from irlib.engine.normalize import Normalize
from irlib.engine.objective import recipe_loss
from irlib.engine.trainer import EpochContext, Hook, PrintEvery, resolve_device
from irlib.errors import IrlibInputError
from irlib.models import count_params
from irlib.simir.probe import MODES, ProbeObjective, ProbeSegmenter
from irlib.vfm import create_encoder

@dataclass
class ProbeVariant:
    """One arm of the study: ``create_encoder(encoder, weights, **encoder_options)`` under a probe
    in ``mode``. ``weights=None`` searches the usual places for pretrained weights, ``"random"``
    builds the untrained architecture (the control); ``feature_index`` picks the encoder map
    (default: :func:`irlib.simir.probe.default_feature_index`)."""

    encoder: str
    weights: str | None = None
    mode: str = "frozen"
    encoder_options: dict[str, Any] = field(default_factory=dict)
    feature_index: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise IrlibInputError(f"variant {self.encoder!r}: mode={self.mode!r}; use one of {MODES}")
        self.encoder_options = dict(self.encoder_options or {})

    @property
    def init(self) -> str:
        """``"random"`` for the untrained controls, else ``"pretrained"``."""
        return "random" if self.weights == "random" or self.encoder.endswith("_random") else "pretrained"

    @property
    def label(self) -> str:
        """``<encoder>-<pretrained|random>-<mode>``, the study's name for this arm."""
        return f"{self.encoder}-{self.init}-{self.mode}"

    @classmethod
    def parse(cls, value: "ProbeVariant | dict[str, Any] | Sequence[Any]") -> "ProbeVariant":
        """From a variant, a dict of its fields or a tuple ``(encoder, weights, mode)``."""
        if isinstance(value, ProbeVariant):
            return value
        if isinstance(value, dict):
            return cls(**value)
        if isinstance(value, (tuple, list)) and 1 <= len(value) <= 3:
            return cls(*value)
        raise IrlibInputError(f"variant {value!r}: give a ProbeVariant, a dict or (encoder, weights, mode)")


@dataclass
class ProbingConfig(StudyConfig):
    """Every setting of one probing study (a profile fills the ones left as ``None``).

    Data, recipe, seeds and device are :class:`~irlib.engine.config.StudyConfig`'s: ``recipe``
    names a recipe of :mod:`irlib.engine.recipes`, whose ``epochs``, ``batch_size``, ``crop_size``,
    ``lr``, ``weight_decay``, ``loss`` and ``schedule`` the fields of the same name replace.
    ``curve_every``: score train and test images every that many epochs (and after the last);
    ``curve_train_images`` caps the training images scored (the first N).
    ``latency_runs``: timed CPU forwards of one 256x256 image (median reported).
    """

    variants: list[Any] = field(default_factory=list)
    weight_decay: float | None = None
    loss: str | None = None
    schedule: str | None = None
    curve_every: int = 1
    curve_train_images: int | None = None
    latency_runs: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        self.variants = [ProbeVariant.parse(v) for v in self.variants]
        if not self.variants:
            raise IrlibInputError("ProbingConfig: no variants; give variants=[(encoder, weights, mode), ...]")
        labels = [v.label for v in self.variants]
        if len(set(labels)) != len(labels):
            raise IrlibInputError(f"ProbingConfig: variants repeat: {labels}")
        if self.curve_every < 1 or self.latency_runs < 1:
            raise IrlibInputError("ProbingConfig: curve_every and latency_runs must be >= 1")


def _grid(encoders: Sequence[str], weights: Sequence[str | None], modes: Sequence[str] = MODES,
          **encoder_options: Any) -> list[ProbeVariant]:
    return [ProbeVariant(e, w, m, dict(encoder_options)) for e in encoders for w in weights for m in modes]


#: Profile defaults.
#:
#: * ``smoke``: two tiny synthetic runs (a pipeline check).
#: * ``demo``: CPU runs on NUAA-SIRST: EfficientNet-Lite0 ImageNet frozen and fine-tuned, its random
#:   control fine-tuned, MobileNetV2 ImageNet fine-tuned; ``simir_cpu`` recipe (SimIR's BCE + Dice), 15
#:   epochs. A first demo with ``cpu_demo`` (SoftIoU) at lr 1e-4 for 20 epochs left every probe on
#:   SoftIoU's all-background plateau (IoU 0 for the 5 variants it finished), so the loss was changed.
#: * ``paper``: SAM ViT-B/L/H and DINOv2 S/B (those whose weights are found), both modes, at 512 input
#:   (SimIR builds every encoder for 512), plus a random SAM ViT-B control; SimIR's recipe (``simir``).
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": dict(variants=[ProbeVariant("efficientnet_lite0", None, "frozen"),
                            ProbeVariant("efficientnet_lite0", "random", "finetune")],
                  dataset="synthetic", synthetic_train=8, synthetic_test=4, synthetic_size=64, epochs=2,
                  batch_size=4, crop_size=64, curve_every=1, latency_runs=2),
    "demo": dict(variants=[ProbeVariant("efficientnet_lite0", None, "frozen"),
                           ProbeVariant("efficientnet_lite0", None, "finetune"),
                           ProbeVariant("efficientnet_lite0", "random", "finetune"),
                           ProbeVariant("mobilenet_v2", None, "finetune")],
                 dataset="NUAA-SIRST", recipe="simir_cpu", epochs=15, lr=1e-3, curve_every=5),
    "paper": dict(variants=_grid(["sam_vit_b", "sam_vit_l", "sam_vit_h", "dinov2_vits14", "dinov2_vitb14"], [None],
                                 resize=512) + [ProbeVariant("sam_vit_b", "random", "finetune", {"resize": 512})],
                  dataset="NUAA-SIRST", recipe="simir", curve_every=10, latency_runs=3),
}


def make_config(profile: str | None = None, **overrides: Any) -> ProbingConfig:
    """Config of ``profile`` (see :data:`PROFILES`) with every non-``None`` override applied."""
    return config_from_profile(ProbingConfig, PROFILES, profile, overrides, "probing settings")


# ----------------------------------------------------------------------------- building
def build_encoder(variant: ProbeVariant, seed: int) -> nn.Module:
    """The variant's encoder; random weights are drawn from ``seed`` unless its options set one."""
    options = {"seed": seed, **variant.encoder_options}
    return create_encoder(variant.encoder, weights=variant.weights, **options)


def build_probe(variant: ProbeVariant, seed: int, normalize: Normalize) -> ProbeSegmenter:
    """The variant's probe; the head's initialisation is drawn from ``seed``."""
    encoder = build_encoder(variant, seed)
    torch.manual_seed(seed)
    return ProbeSegmenter(encoder, variant.mode, normalize=normalize, feature_index=variant.feature_index)


def available_variants(cfg: ProbingConfig) -> tuple[list[ProbeVariant], list[dict[str, str]]]:
    """Split the variants into those whose encoder can be built and the skipped ones (with the
    reason): pretrained weights that are not on this machine. Raises when every pretrained variant
    is skipped, since random controls alone answer nothing."""
    usable, skipped = [], []
    for v in cfg.variants:
        try:
            build_encoder(v, cfg.seeds[0])
            usable.append(v)
        except IrlibInputError as exc:
            if v.weights is not None:  # an explicit file that fails is an error, not a skip
                raise
            skipped.append({"variant": v.label, "reason": str(exc)})
    if skipped and not any(v.init == "pretrained" for v in usable):
        reasons = "\n".join(f"- {s['variant']}: {s['reason']}" for s in skipped)
        raise IrlibInputError("no pretrained encoder of this study could be loaded; put the checkpoints in "
                              f"$IRLIB_WEIGHTS (or give weights paths), or use profile 'demo':\n{reasons}")
    return usable, skipped


# ----------------------------------------------------------------------------- measuring
class TrainImagesCurve(Hook):
    """Scores the model on the training images (native size) every ``every`` epochs and after the
    last one, into the epoch's row as ``train_*`` columns (IoU, nIoU, Pd in percent, Fa in 1e-6)."""

    def __init__(self, images: Sequence[Any], normalize: Normalize, every: int, device: str = "auto") -> None:
        self.images, self.normalize, self.every, self.device = images, normalize, int(every), device

    def on_epoch_end(self, ctx: EpochContext) -> None:
        if (ctx.epoch + 1) % self.every == 0 or ctx.epoch + 1 == ctx.epochs:
            scores = evaluate_model(ctx.model, self.images, self.normalize, self.device).row()
            ctx.row.update({f"train_{k}": v for k, v in scores.items()})


def cpu_latency_ms(model: nn.Module, size: int = 256, runs: int = 5) -> float:
    """Median wall time (ms) of one inference forward of a ``(1, 1, size, size)`` image on the CPU
    (a copy of the model; the current torch thread count), after one untimed warm-up run."""
    m = copy.deepcopy(model).cpu().eval()
    x = torch.zeros(1, 1, size, size)
    times = []
    with torch.no_grad():
        for i in range(runs + 1):
            t0 = time.perf_counter()
            m(x)
            if i:
                times.append(1000 * (time.perf_counter() - t0))
    return float(statistics.median(times))


def trained_params(model: nn.Module) -> int:
    """Parameters the last optimiser step updated (they hold a gradient): excludes encoder parts
    the chosen feature map does not depend on (a CNN's deeper stages and head)."""
    got = sum(p.numel() for p in model.parameters() if p.requires_grad and p.grad is not None)
    return got or count_params(model, trainable_only=True)


# ----------------------------------------------------------------------------- running
def run_variant(cfg: ProbingConfig, variant: ProbeVariant, seed: int, data: ExperimentData,
                progress: bool = False) -> RunResult:
    """Train one variant with ``seed`` (crops drawn from ``seed`` too) and score it."""
    t0 = time.perf_counter()
    recipe = cfg.training_recipe()
    data = replace(data, train=data.train.with_seed(seed))
    model = build_probe(variant, seed, data.normalize)
    row = {"dataset": cfg.dataset, "encoder": variant.encoder, "stand_in": model.is_stand_in,
           "mode": variant.mode, "init": variant.init, "feature": model.feature_name,
           "encoder_description": model.encoder.description, "profile": cfg.profile}
    curve = TrainImagesCurve(first_items(data.train.base, cfg.curve_train_images), data.normalize,
                             cfg.curve_every, cfg.device)
    hooks: list[Hook] = [curve] + ([] if progress else [PrintEvery(10)])
    result = run_training(model, data, recipe, seed=seed, variant=variant.label,
                          objective=ProbeObjective(recipe_loss(recipe)), eval_every=cfg.curve_every,
                          device=cfg.device, progress=progress, row=row, hooks=hooks)
    result.row.update({"trainable_params": trained_params(model), "total_params": count_params(model)})
    model.zero_grad(set_to_none=True)  # the latency copy needs no gradients
    result.row.update({"cpu_latency_ms_256": round(cpu_latency_ms(model, 256, cfg.latency_runs), 2),
                       "latency_threads": torch.get_num_threads(),
                       "device": str(resolve_device(cfg.device)),
                       "wall_time_s": round(time.perf_counter() - t0, 1)})
    return result


@dataclass
class ProbingStudy:
    """The trained variants (one :class:`RunResult` per variant and seed) and the skipped ones."""

    config: ProbingConfig
    runs: list[RunResult]
    skipped: list[dict[str, str]] = field(default_factory=list)
    data_label: str = ""

    @property
    def table(self) -> Any:
        return results_table(self.runs)

    @property
    def curves(self) -> Any:
        return curves_table(self.runs)


def run_study(cfg: ProbingConfig, progress: bool = False) -> ProbingStudy:
    """Train and score every available variant for every seed (variants inner)."""
    usable, skipped = available_variants(cfg)
    for s in skipped:
        print(f"skipped {s['variant']}: {s['reason']}", flush=True)
    recipe = cfg.training_recipe()
    data = engine_experiment.load_data(cfg.data_settings(), recipe, cfg.seeds[0])
    runs = []
    for seed in cfg.seeds:
        for variant in usable:
            run = run_variant(cfg, variant, seed, data, progress)
            r = run.row
            print(f"{variant.label:40s} seed {seed}: {scores_text(r)}  ({r['wall_time_s']} s)", flush=True)
            runs.append(run)
    return ProbingStudy(cfg, runs, skipped, data.label)


# ----------------------------------------------------------------------------- tables and files
#: The columns of the study's table, in order (the CSV holds every column of the rows).
TABLE_COLUMNS = ("variant", "encoder", "stand_in", "mode", "init", "IoU", "nIoU", "Pd", "Fa_1e-6", "HSE",
                 "trainable_params", "total_params", "cpu_latency_ms_256", "seed", "epochs", "wall_time_s")
_CURVE_METRICS = ("IoU", "nIoU", "Pd", "Fa_1e-6")


def results_table(runs: Sequence[RunResult]) -> Any:
    """One row per run: :data:`TABLE_COLUMNS` (IoU / nIoU / Pd in percent, Fa in 1e-6)."""
    import pandas as pd

    return pd.DataFrame([{k: r.row.get(k) for k in TABLE_COLUMNS} for r in runs], columns=list(TABLE_COLUMNS))


def curves_table(runs: Sequence[RunResult]) -> Any:
    """Tidy train-vs-test curves: one row per run, epoch and split (``"train"`` / ``"test"``)."""
    import pandas as pd

    rows = []
    for r in runs:
        keys = {k: r.row.get(k) for k in ("variant", "encoder", "stand_in", "mode", "init", "seed")}
        for h in r.history.rows:
            for split, prefix in (("train", "train_"), ("test", "eval_")):
                if f"{prefix}IoU" in h:
                    rows.append({**keys, "epoch": h["epoch"], "split": split,
                                 **{m: h.get(prefix + m) for m in _CURVE_METRICS}})
    return pd.DataFrame(rows, columns=["variant", "encoder", "stand_in", "mode", "init", "seed", "epoch", "split",
                                       *_CURVE_METRICS])


def study_title(study: ProbingStudy) -> str:
    """One line for table and figure titles: data, recipe, and which encoders are stand-ins."""
    cfg, recipe = study.config, study.config.training_recipe()
    stand_ins = sorted({r.row["encoder"] for r in study.runs if r.row.get("stand_in")})
    note = f" | STAND-IN encoders (not foundation models): {', '.join(stand_ins)}" if stand_ins else ""
    return (f"VFM probing on {study.data_label or cfg.dataset}{note} | recipe {recipe.name}: {recipe.epochs} ep, "
            f"batch {recipe.batch_size}, crop {recipe.crop_size}, lr {recipe.lr:g}, {recipe.loss} | "
            f"profile {cfg.profile}")


def results_stem(cfg: ProbingConfig) -> str:
    """``probing_<dataset>_<profile>``, the file name of a study's results."""
    return f"probing_{cfg.dataset}_{cfg.profile}".replace("/", "-")


def provenance(cfg: ProbingConfig) -> dict[str, Any]:
    """Parameters, recipe, seeds, versions and commit; take it before training."""
    return cfg.provenance()


def write_results(study: ProbingStudy, out_dir: str | Path, metadata: dict[str, Any] | None = None) -> dict[str, Path]:
    """``<stem>.csv`` (every column of every run), ``<stem>.json`` (rows, summary, histories,
    provenance, skipped variants) and ``<stem>_curves.csv`` into ``out_dir``, atomically."""
    meta = {**(metadata or provenance(study.config)), "skipped_variants": study.skipped,
            "data_label": study.data_label, "title": study_title(study)}
    stem = results_stem(study.config)
    paths = engine_experiment.write_results(stem, study.runs, out_dir, meta)
    return {**paths, "curves": write_csv(Path(out_dir) / f"{stem}_curves.csv", study.curves)}


__all__ = ["PROFILES", "ProbeVariant", "ProbingConfig", "ProbingStudy", "TABLE_COLUMNS",
           "TrainImagesCurve", "available_variants", "build_probe", "cpu_latency_ms", "curves_table",
           "make_config", "provenance", "results_stem", "results_table", "run_study", "run_variant",
           "study_title", "trained_params", "write_results"]
