"""SimIR ablations: query type, decoder depth, stem stride and distillation on / off.

Each study varies the student (``SimIRStudent`` keywords in ``student_options``) or the arm
around the profile's reference and trains through :func:`irlib.simir.distill_study.run_arm`.
The config dict is :class:`~irlib.simir.distill_study.DistillStudyConfig`'s fields plus ``arm``
(``"student_scratch"`` or ``"student_distilled"``). ``train_time_s`` is stage 1 plus stage 2
(``stage2_time_s`` alone is in the CSV).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Sequence

from irlib.engine import experiment as engine_experiment
from irlib.engine.experiment import RunResult, weights_meta
from irlib.engine.study import Study, sweep
from irlib.errors import IrlibInputError
from irlib.models import create_model
from irlib.paths import resolve_profile
from irlib.simir import distill_study as ds

STUDENT_ARMS = ("student_scratch", "student_distilled")

#: Settings on top of :data:`irlib.simir.distill_study.PROFILES`. ``smoke``: 4 synthetic 64-pixel
#: images, 1 epoch (and 1 of stage 1). ``demo``: NUAA-SIRST, ``simir_tiny``, ``simir_cpu``
#: shortened to 10 epochs, stage 1 10 epochs. ``paper``: the released ``simir``, its recipe.
BASE: dict[str, dict[str, Any]] = {
    "smoke": dict(epochs=1, stage1_epochs=1, synthetic_train=4, synthetic_test=2),
    "demo": dict(epochs=10, stage1_epochs=10),
    "paper": dict(),
}
SEEDS = {"smoke": [0], "demo": [0], "paper": [0, 1, 2]}


def _config(config: dict[str, Any]) -> tuple[str, ds.DistillStudyConfig]:
    arm = config.pop("arm")
    if arm not in STUDENT_ARMS:
        raise IrlibInputError(f"arm must be one of {STUDENT_ARMS}, got {arm!r}")
    return arm, ds.DistillStudyConfig(**{**config, "arms": [arm]})


def train(config: dict[str, Any], seed: int) -> RunResult:
    """One student arm of ``config`` with ``seed``."""
    arm, cfg = _config(config)
    data = engine_experiment.load_data(cfg.data_settings(), cfg.training_recipe(), seed)
    result = ds.run_arm(cfg, arm, seed, data, {})
    result.extra["weights_meta"] = weights_meta(data.normalize, cfg.dataset, seed, arm=arm, epochs=cfg.epochs,
                                                stage1_epochs=cfg.stage1_epochs if arm == "student_distilled" else 0)
    row = result.row
    row["stage2_time_s"] = row["train_time_s"]
    row["train_time_s"] = round(row["train_time_s"] + row.get("stage1_time_s", 0.0), 1)
    return result


def check(config: dict[str, Any]) -> None:
    """Build the variant's student once (bad ``SimIRStudent`` keywords raise)."""
    _, cfg = _config(config)
    create_model(cfg.student, **cfg.student_options)


#: ``SimIRStudent`` stem stride of each student factory (what ``student_options`` leaves alone).
STEM_STRIDE = {"simir": 1, "simir_s4": 4, "simir_tiny": 4}


def variants(axis: str, base: dict[str, Any], profile: str) -> dict[str, dict[str, Any]]:
    """The variants of one axis; the base config's own setting is the reference (no overrides)."""
    if axis == "queries":
        names = {"none": "no queries", "sparse": "sparse", "sparse_dense": "sparse + dense"}
        return sweep(base, "student_options.queries", list(names), names.get, default="sparse_dense")
    if axis == "decoder":
        depths = [1, 2, 4] if profile == "paper" else [1, 2]
        return sweep(base, "student_options.decoder_depth", depths, lambda d: f"depth {d}", default=2)
    if axis == "stem":
        strides = [1, 2, 4] if profile == "paper" else [4, 2]
        return sweep(base, "student_options.stem_stride", strides, lambda s: f"stem stride {s}",
                     default=STEM_STRIDE.get(base["student"], 1))
    if axis == "distill":
        return sweep(base, "arm", list(STUDENT_ARMS), lambda a: a.removeprefix("student_"))
    raise KeyError(axis)


AXES = {"queries": "encoder queries", "decoder": "two-way decoder depth", "stem": "stem stride",
        "distill": "stage-1 distillation"}


def build(axis: str, profile: str | None = None, seeds: Sequence[int] | None = None, **settings: Any) -> Study:
    """The SimIR study of ``axis`` for ``profile``; ``settings`` replace ``DistillStudyConfig`` fields."""
    profile = resolve_profile(profile)
    seeds = list(seeds or SEEDS[profile])
    cfg = ds.make_config(profile, **{**BASE[profile], **settings, "seeds": seeds})
    recipe = cfg.training_recipe()
    teacher = f"teacher {cfg.teacher}" + ("" if cfg.teacher.startswith("sam") else " (STAND-IN for Semantic-SAM)")
    title = (f"SimIR ablation, {AXES[axis]} | student {cfg.student} on {cfg.dataset} | recipe {recipe.name}: "
             f"{recipe.epochs} ep, crop {recipe.crop_size} | stage 1 {cfg.stage1_epochs} ep, {teacher} | "
             f"profile {profile}")
    base = {"arm": "student_scratch", **cfg.as_dict()}
    return Study(f"simir_{axis}", base, variants(axis, base, profile), seeds, train, profile=profile, check=check,
                 title=title)


#: ``STUDIES[name](profile, seeds, **settings)`` is :func:`build` of the name's axis.
STUDIES: dict[str, Callable[..., Study]] = {f"simir_{axis}": partial(build, axis) for axis in AXES}

__all__ = ["AXES", "BASE", "SEEDS", "STUDIES", "STUDENT_ARMS", "build", "check", "train", "variants"]
