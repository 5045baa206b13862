"""Point-supervision ablations of the bilevel scheme (Yao et al.): SCAM modulation scale, VFM
layers, cluster reweighting, outer-loop period.

Each run is :func:`irlib.point.study.run_study` restricted to one host (ACM), one seed and the
deployed student of the bilevel run (``ours_student``). The config dict is
:class:`~irlib.point.study.PointStudyConfig`'s fields. "No reweighting" is one cluster
(``clusters=1``): every sample's weight is then exactly 1.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Sequence

from irlib.engine.experiment import RunResult, weights_meta
from irlib.engine.study import Study, sweep
from irlib.paths import resolve_profile
from irlib.point import study as ps

#: Settings on top of :data:`irlib.point.study.PROFILES`. ``smoke``: its 8 synthetic 64-pixel images,
#: 2 epochs. ``demo``: its NUAA-SIRST setting (``basicirstd`` + ``head_prior=0.01``,
#: EfficientNet-Lite0 VFM) shortened to 15 epochs. ``paper``: the release's protocol (300 epochs, DINOv2 ViT-S/14).
BASE: dict[str, dict[str, Any]] = {
    "smoke": dict(epochs=2),
    "demo": dict(epochs=15, eval_every=0),
    "paper": dict(eval_every=0),
}
SEEDS = {"smoke": [0], "demo": [0], "paper": [1, 2, 3]}
AXES = {"scam_scale": "SCAM modulation scale", "vfm_layers": "number of VFM layers fused by SCAM",
        "clusters": "cluster reweighting", "outer_period": "bilevel outer-loop period"}


def train(config: dict[str, Any], seed: int) -> RunResult:
    """The bilevel run of ``config`` with ``seed``, scored through its deployed student."""
    cfg = ps.PointStudyConfig(**{**config, "seeds": [seed]})
    study = ps.run_study(cfg)
    result = study.runs[0]
    result.extra["weights_meta"] = weights_meta(study.normalize, cfg.dataset, seed, arm=result.row["arm"],
                                                epochs=cfg.epochs)
    return result


def check(config: dict[str, Any]) -> None:
    """Build the variant's teacher once (bad layers or SCAM options, a paper-profile stand-in raise)."""
    from irlib.models import create_model
    from irlib.point.scam import ScamTeacher

    cfg = ps.PointStudyConfig(**config)
    ScamTeacher(create_model(cfg.hosts[0]), ps.build_encoder(cfg), vfm_layers=cfg.vfm_layers, **cfg.scam_options)


def variants(axis: str, base: dict[str, Any], profile: str) -> dict[str, dict[str, Any]]:
    """The variants of one axis; the base config's own setting is the reference (no overrides)."""
    if axis == "scam_scale":
        from irlib.point.scam import DEFAULT_SCALE

        return sweep(base, "scam_options.scale", [0.0, DEFAULT_SCALE, 0.55],
                     lambda v: "scale 0 (no SCAM)" if v == 0 else f"scale {v:g}", default=DEFAULT_SCALE)
    if axis == "vfm_layers":  # the deepest 1 or 2 of the encoder's 4 maps, or all
        return sweep(base, "vfm_layers", [[3], [2, 3], None],
                     lambda v: "all layers" if v is None else f"{len(v)} layer" + "s" * (len(v) > 1))
    if axis == "clusters":
        return sweep(base, "clusters", [None, 1], lambda k: "no reweighting (1 cluster)" if k == 1 else
                     "reweighting" + (f" ({k} clusters)" if k else ""))
    if axis == "outer_period":
        return sweep(base, "outer_every", [1, 2] if profile == "smoke" else [2, 5, 10], lambda p: f"every {p} ep")
    raise KeyError(axis)


def build(axis: str, profile: str | None = None, seeds: Sequence[int] | None = None,
          **settings: Any) -> Study:
    """The point-supervision study of ``axis`` for ``profile``; ``settings`` replace ``PointStudyConfig`` fields."""
    profile = resolve_profile(profile)
    seeds = list(seeds or SEEDS[profile])
    cfg = ps.make_config(profile, **{**BASE[profile], **settings, "arms": ["ours_student"], "hosts": ["acm"],
                                     "seeds": seeds})
    recipe = cfg.training_recipe()
    vfm = cfg.encoder + ("" if cfg.encoder.startswith("dino") else " (STAND-IN for DINOv3)")
    title = (f"Point supervision ablation, {AXES[axis]} | bilevel student, ACM on {cfg.dataset}, {cfg.points} points "
             f"| VFM {vfm} | recipe {recipe.name}: {recipe.epochs} ep, crop {recipe.crop_size}, lr {recipe.lr:g} | "
             f"outer {cfg.outer_steps} steps / {cfg.outer_every} ep | profile {profile}")
    base = cfg.as_dict()
    return Study(f"point_{axis}", base, variants(axis, base, profile), seeds, train, profile=profile, check=check,
                 title=title)


#: ``STUDIES[name](profile, seeds, **settings)`` is :func:`build` of the name's axis.
STUDIES: dict[str, Callable[..., Study]] = {f"point_{axis}": partial(build, axis) for axis in AXES}

__all__ = ["AXES", "BASE", "SEEDS", "STUDIES", "build", "check", "train", "variants"]
