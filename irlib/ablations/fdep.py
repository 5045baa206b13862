"""FDEP ablations: SAMF count, lambda, gating, identity start, encoder, and CO-ISD itself.

Each study varies one setting of :class:`irlib.fdep.experiment.FdepConfig` around the profile's
reference (4 SAMF modules fed by the encoder's 4 maps, lambda 1, no gate, no identity start, the
light branch deployed) and trains through :func:`irlib.fdep.experiment.run_arm`. The config
dict is ``FdepConfig``'s fields plus ``arm`` (``"fdep"`` or ``"baseline"``: the host alone).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Sequence

from irlib.engine.experiment import RunResult, weights_meta
from irlib.engine.study import Study, sweep
from irlib.fdep import experiment as fx
from irlib.paths import resolve_profile

#: Settings on top of :data:`irlib.fdep.experiment.PROFILES`. ``smoke``: 8 synthetic 64-pixel
#: images, 1 epoch. ``demo``: NUAA-SIRST, ``basicirstd`` with the named deviation ``head_prior=0.01``
#: for 20 epochs, cached frozen features (ACM leaves SoftIoU's plateau within ~6 epochs with the prior;
#: the first demo run, ``cpu_demo`` for 20 epochs, left every variant on the plateau below 10 IoU:
#: ``results/ablations/superseded/``). ``paper``: NUAA-SIRST, the authors' recipe with DINOv2 ViT-B/14.
BASE: dict[str, dict[str, Any]] = {
    "smoke": dict(epochs=1, batch_size=4, crop_size=64, synthetic_train=8, synthetic_test=4, synthetic_size=64,
                  max_train_images=8, max_test_images=4, eval_every=0),
    "demo": dict(dataset="NUAA-SIRST", eval_every=0, recipe="basicirstd", head_prior=0.01, epochs=20,
                 vfm_cache="memory", vfm_cache_gib=6),
    "paper": dict(dataset="NUAA-SIRST", eval_every=0),
}
SEEDS = {"smoke": [0], "demo": [0], "paper": [0, 1, 2]}


def train(config: dict[str, Any], seed: int) -> RunResult:
    """One arm of ``config`` (``FdepConfig`` fields plus ``arm``) with ``seed``."""
    arm = config.pop("arm")
    cfg = fx.FdepConfig(**config)
    data = fx.load_data(cfg, seed)
    result = fx.run_arm(cfg, arm, seed, data, progress=False, keep=())
    result.extra["weights_meta"] = weights_meta(data.normalize, cfg.dataset, seed, arm=arm, epochs=cfg.epochs)
    return result


def check(config: dict[str, Any]) -> None:
    """Build the variant's model once (bad gate, layers, encoder or paper stand-in raise)."""
    arm = config.pop("arm")
    fx.build_model(fx.FdepConfig(**config), arm, 0)


def variants(axis: str, base: dict[str, Any], profile: str) -> dict[str, dict[str, Any]]:
    """The variants of one axis; the base config's own setting is the reference (no overrides)."""
    if axis == "samf":  # n SAMF modules fed by the deepest n of the encoder's 4 maps
        ref = base["num_samf"] if base["vfm_layers"] is None else None
        return {f"{n} SAMF": {} if n == ref else {"num_samf": n, "vfm_layers": list(range(4 - n, 4))}
                for n in (0, 1, 2, 4)}
    if axis == "lambda":
        return sweep(base, "lam", [0.5, 1.0, 2.0], lambda v: f"lambda {v:g}")
    if axis == "gate":
        return sweep(base, "samf_gate", ["none", "sigmoid", "tanh"], lambda v: "no gate" if v == "none" else v)
    if axis == "identity":
        return sweep(base, "samf_options.identity_init", [False, True], lambda v: "identity start" if v else "plain start",
                     default=False)
    if axis == "encoder":  # the paper profile refuses stand-ins unless allowed
        out = sweep(base, "encoder", ["efficientnet_lite0", "mobilenet_v2", "tiny_cnn_random"])
        return {k: {**v, "allow_stand_in": True} if v and profile == "paper" else v for k, v in out.items()}
    if axis == "coisd":
        names = {"light": "CO-ISD (light branch)", "main": "no CO-ISD (main branch + VFM)"}
        return {**sweep(base, "deploy_branch", ["light", "main"], names.get), "host only": {"arm": "baseline"}}
    raise KeyError(axis)


AXES = {"samf": "number of SAMF modules", "lambda": "light-branch weight lambda", "gate": "SAMF gating of g",
        "identity": "SAMF identity start", "encoder": "frozen encoder",
        "coisd": "CO-ISD: deployed light branch vs main branch with the VFM kept"}


def build(axis: str, profile: str | None = None, seeds: Sequence[int] | None = None, **settings: Any) -> Study:
    """The FDEP study of ``axis`` for ``profile``; ``settings`` replace ``FdepConfig`` fields."""
    profile = resolve_profile(profile)
    seeds = list(seeds or SEEDS[profile])
    cfg = fx.make_config(profile, **{**BASE[profile], **settings, "seeds": seeds})
    title = f"FDEP ablation, {AXES[axis]} | {fx.protocol_title(cfg)}"
    if not cfg.encoder.startswith("dinov2"):
        title += " | ImageNet / random encoders are STAND-INS for DINO"
    base = {"arm": "fdep", **cfg.as_dict()}
    return Study(f"fdep_{axis}", base, variants(axis, base, profile), seeds, train, profile=profile, check=check,
                 title=title)


#: ``STUDIES[name](profile, seeds, **settings)`` is :func:`build` of the name's axis.
STUDIES: dict[str, Callable[..., Study]] = {f"fdep_{axis}": partial(build, axis) for axis in AXES}

__all__ = ["AXES", "BASE", "SEEDS", "STUDIES", "build", "check", "train", "variants"]
