"""The FDEP experiment of notebooks/02_fdep_train.ipynb: baseline vs host + FDEP, one recipe.

Both arms share the data, crops, sample order, recipe (optimiser, schedule, epochs) and seed; they
differ only in the training step (plain supervised loss vs CO-ISD with SAMF and the frozen
encoder). Training, evaluation and results files are :mod:`irlib.engine.experiment`'s: the
deployed host at native resolution, last epoch, IoU / nIoU / Pd / Fa at 0.5 and HSE.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from irlib.data.torchdata import SirstTorchDataset
from irlib.engine import experiment as engine_experiment
from irlib.engine.config import StudyConfig, config_from_profile
from irlib.engine.experiment import ExperimentData, RunResult, run_training, summarize
from irlib.engine.trainer import PrintEvery
from irlib.errors import IrlibInputError
from irlib.fdep.cache import FrozenFeatures, required_align
from irlib.fdep.coisd import CoISD, MainBranch, choose_vfm_layers
from irlib.fdep.objective import CoISDObjective
from irlib.fdep.store import DiskStore, MemoryStore
from irlib.models import count_params, create_model
from irlib.vfm import create_encoder

VARIANTS = ("baseline", "fdep")
#: ``FdepConfig.vfm_cache`` values: per-crop encoder (None), or whole-image maps cut to the crop.
VFM_CACHE_MODES = (None, "full", "memory", "disk")
#: ``FdepConfig.deploy_branch`` values: the light branch (the host, as FDEP deploys it) or the main one.
DEPLOY_BRANCHES = ("light", "main")

#: Option names that have their own config field (option -> field).
_ENCODER_FIELDS = {"weights": "encoder_weights", "name": "encoder"}
_SAMF_FIELDS = {"gate": "samf_gate", "num_samf": "num_samf", "vfm_layers": "vfm_layers",
                "host": "host", "encoder": "encoder"}


@dataclass
class FdepConfig(StudyConfig):
    """Every setting of one FDEP experiment (a profile fills the ones left as ``None``).

    Data, recipe, seeds and device are :class:`~irlib.engine.config.StudyConfig`'s: ``recipe``
    names the training recipe (:mod:`irlib.engine.recipes`); ``epochs``, ``batch_size``,
    ``crop_size``, ``lr``, ``weight_decay``, ``loss``, ``schedule`` and ``head_prior`` replace its fields when set.

    The FDEP arm is ``CoISD(host, create_encoder(encoder, weights=encoder_weights,
    **encoder_options), num_samf, vfm_layers, gate=samf_gate, **samf_options)``:

    * ``encoder_options``: the encoder's own options, e.g. ``resize`` (input policy; a larger
      side enlarges small targets: SAM's default ``1024`` upsamples a 256 crop 4x, ``"pad"``
      keeps the native resolution), ``layer_indices`` (which blocks / stages), ``include_neck``;
    * ``vfm_layers``: which of the encoder's feature maps feed SAMF 1..``num_samf``. Left
      ``None``, the encoder must give exactly ``num_samf`` maps (all are used); otherwise
      :func:`irlib.fdep.coisd.choose_vfm_layers` raises instead of picking a subset that skips one;
    * ``samf_options``: every other keyword of :class:`~irlib.fdep.coisd.CoISD` and
      :class:`~irlib.fdep.samf.SAMF` (``kernel_size``, ``proj_kernel``, ``out_act``,
      ``main_bn_stats``, ...), passed through as they are, so new options need no new field.

    Frozen-feature caching (:mod:`irlib.fdep.cache`, docs/fdep.md): ``vfm_cache=None`` (default)
    runs the encoder on every crop. Any other value aligns the training crops of **both** arms to
    the encoder's coarsest grid (a deviation from BasicIRSTD's crops) and cuts the SAMF inputs
    from the encoder's maps of the whole padded, flipped image: ``"full"`` computes them every step
    (uncached reference), ``"memory"`` keeps them in RAM up to ``vfm_cache_gib`` (then refuses new
    entries), ``"disk"`` under ``vfm_cache_dir``; ``vfm_cache_dtype="float16"`` halves the memory.

    ``deploy_branch``: the fdep arm scores its light branch, the host alone (``"light"``, FDEP's
    deployment), or its main branch with SAMF and the frozen VFM kept at inference (``"main"``:
    :class:`~irlib.fdep.coisd.MainBranch`, the "without CO-ISD" ablation).
    """

    host: str = "acm"
    encoder: str = "efficientnet_lite0"
    encoder_weights: str | None = None
    encoder_options: dict[str, Any] = field(default_factory=dict)
    num_samf: int = 4
    vfm_layers: list[int] | None = None
    samf_gate: str = "none"
    samf_options: dict[str, Any] = field(default_factory=dict)
    lam: float = 1.0
    weight_decay: float | None = None
    loss: str | None = None
    schedule: str | None = None
    head_prior: float | None = None   # the recipe's named deviation (initial foreground probability)
    eval_every: int = 0
    channels_last: bool = False  # faster CPU convolutions (same arithmetic up to float rounding)
    vfm_cache: str | None = None
    vfm_cache_gib: float = 4.0
    vfm_cache_dtype: str = "float32"
    vfm_cache_dir: str | None = None
    # the paper profile is the authors' protocol with a DINO encoder; a stand-in needs this flag
    allow_stand_in: bool = False
    deploy_branch: str = "light"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.vfm_cache not in VFM_CACHE_MODES:
            raise ValueError(f"vfm_cache must be one of {VFM_CACHE_MODES}, got {self.vfm_cache!r}")
        if self.vfm_cache_dtype not in ("float32", "float16"):
            raise ValueError(f"vfm_cache_dtype must be 'float32' or 'float16', got {self.vfm_cache_dtype!r}")
        if self.deploy_branch not in DEPLOY_BRANCHES:
            raise ValueError(f"deploy_branch must be one of {DEPLOY_BRANCHES}, got {self.deploy_branch!r}")
        if self.vfm_cache == "disk" and not self.vfm_cache_dir:
            raise ValueError("vfm_cache='disk' needs vfm_cache_dir")
        self.encoder_options = dict(self.encoder_options or {})
        self.samf_options = dict(self.samf_options or {})
        if self.vfm_layers is not None:
            self.vfm_layers = [int(i) for i in self.vfm_layers]
        for where, options, owner in (("encoder_options", self.encoder_options, _ENCODER_FIELDS),
                                      ("samf_options", self.samf_options, _SAMF_FIELDS)):
            clash = sorted(set(options) & set(owner))
            if clash:
                raise ValueError(f"{where} must not set {clash}: use the settings "
                                 f"{[owner[k] for k in clash]} instead")


#: Profile defaults. ``paper`` is the FDEP authors' protocol as far as it can be established: their
#: framework recipe (``fdep_authors``: AdamW 1e-3, batch 16, random 256 crops, 400 epochs, EEDM
#: loss, AMP on CUDA) with a DINO encoder (DINOv2 ViT-B/14: the paper says only "DINO"; our
#: choice); a stand-in encoder is refused unless ``allow_stand_in``. ``demo`` (``cpu_demo``) fits
#: in 10 minutes on a 2-core CPU with batch 4 of 128 crops; ``smoke`` is for CI.
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": dict(recipe="cpu_demo", epochs=2, batch_size=8, crop_size=64, eval_every=1, synthetic_train=16,
                  synthetic_test=6, synthetic_size=96, max_train_images=16, max_test_images=6),
    "demo": dict(recipe="cpu_demo", eval_every=5, synthetic_train=256, synthetic_test=48, synthetic_size=256),
    "paper": dict(recipe="fdep_authors", encoder="dinov2_vitb14", eval_every=10),
}


def make_config(profile: str | None = None, **overrides: Any) -> FdepConfig:
    """Config of ``profile`` (see :data:`PROFILES`) with every non-``None`` override applied."""
    return config_from_profile(FdepConfig, PROFILES, profile, overrides, "FDEP settings")


def load_data(cfg: FdepConfig, seed: int | None = None) -> ExperimentData:
    """The splits of ``cfg.dataset`` cropped and normalised as the recipe says; the training
    crops are drawn from ``seed`` (default: the first of ``cfg.seeds``)."""
    seed = cfg.seeds[0] if seed is None else seed
    data = engine_experiment.load_data(cfg.data_settings(), cfg.training_recipe(), seed)
    if cfg.vfm_cache is not None:  # both arms train on the same aligned crops
        data = replace(data, train=data.train.with_augment(data.train.augment.aligned(vfm_align(cfg))))
    return data


def vfm_align(cfg: FdepConfig) -> int:
    """The crop grid frozen-feature caching needs for ``cfg``'s encoder and layers (builds it)."""
    encoder = create_encoder(cfg.encoder, weights=cfg.encoder_weights, **cfg.encoder_options)
    return required_align(encoder, choose_vfm_layers(encoder, cfg.num_samf, cfg.vfm_layers))


def feature_source(cfg: FdepConfig, model: CoISD, train: SirstTorchDataset) -> FrozenFeatures | None:
    """The SAMF inputs' source ``cfg.vfm_cache`` asks for (``None``: the encoder runs per crop)."""
    if cfg.vfm_cache is None:
        return None
    dtype = torch.float16 if cfg.vfm_cache_dtype == "float16" else torch.float32
    store: MemoryStore | DiskStore | None = None
    if cfg.vfm_cache == "memory":
        store = MemoryStore(int(cfg.vfm_cache_gib * 2**30))
    elif cfg.vfm_cache == "disk":
        key = {k: getattr(cfg, k) for k in ("dataset", "encoder", "encoder_weights", "encoder_options",
                                            "num_samf", "vfm_layers", "vfm_cache_dtype")}
        key.update(augment=repr(train.augment), images=len(train))
        digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
        store = DiskStore(Path(cfg.vfm_cache_dir).expanduser() / f"{results_stem(cfg)}_{digest}")
    return FrozenFeatures.for_model(model, train, store, dtype)


def build_model(cfg: FdepConfig, variant: str, seed: int) -> nn.Module:
    """The host (baseline) or CO-ISD(host, frozen encoder) (fdep), initialised from ``seed``.

    The host is created first from the same seed in both arms, so both start from identical
    host weights; SAMF modules are initialised afterwards.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    torch.manual_seed(seed)
    host = create_model(cfg.host)
    if variant == "baseline":
        return host
    encoder = create_encoder(cfg.encoder, weights=cfg.encoder_weights, **cfg.encoder_options)
    check_paper_encoder(cfg, encoder.is_stand_in)
    return CoISD(host, encoder, num_samf=cfg.num_samf, vfm_layers=cfg.vfm_layers, gate=cfg.samf_gate,
                 **cfg.samf_options)


def check_paper_encoder(cfg: FdepConfig, is_stand_in: bool) -> None:
    """The ``paper`` profile claims the authors' protocol, which needs a DINO encoder: refuse a
    stand-in unless ``cfg.allow_stand_in`` (its results are then labelled stand-in)."""
    if cfg.profile == "paper" and is_stand_in and not cfg.allow_stand_in:
        raise IrlibInputError(
            f"profile 'paper' runs the FDEP authors' protocol with a DINO encoder, but {cfg.encoder!r} "
            f"(weights {cfg.encoder_weights or 'not given'}) is a stand-in. Put the DINOv2 checkpoint in "
            f"$IRLIB_WEIGHTS (or pass encoder_weights), or pass allow_stand_in=True to run the protocol "
            f"with the stand-in (every result and figure then says so), or use profile 'demo'.")


def protocol_title(cfg: FdepConfig, runs: Sequence[RunResult] = ()) -> str:
    """One line for figure titles: host, data, encoder (and "stand-in" where it is one), recipe."""
    recipe = cfg.training_recipe()
    stand_in = any(r.row.get("encoder_is_stand_in") for r in runs)
    encoder = f"{cfg.encoder}" + (" (STAND-IN for DINO)" if stand_in else "")
    return (f"{cfg.host.upper()} on {cfg.dataset} | FDEP encoder {encoder} | recipe {recipe.name}: "
            f"{recipe.epochs} ep, batch {recipe.batch_size}, crop {recipe.crop_size}, {recipe.loss} | "
            f"profile {cfg.profile}")


def run_arm(cfg: FdepConfig, variant: str, seed: int, data: ExperimentData, progress: bool = True,
            keep: Sequence[int] = (0, 1, 2, 3), predictions_root: str | Path | None = None) -> RunResult:
    """Train one arm with ``seed`` (crops drawn from ``seed`` too) and evaluate its deployed host.
    With ``predictions_root`` its test maps go to :func:`predictions_folder` (notebook 03 reads them)."""
    recipe = cfg.training_recipe()
    data = replace(data, train=data.train.with_seed(seed))
    model = build_model(cfg, variant, seed)
    is_fdep = isinstance(model, CoISD)
    features = feature_source(cfg, model, data.train) if is_fdep else None
    objective = CoISDObjective(recipe.loss, cfg.lam, data.normalize, features) if is_fdep else None
    row = {"dataset": cfg.dataset, "host": cfg.host, "encoder": cfg.encoder if is_fdep else "none",
           "encoder_is_stand_in": bool(model.encoder.is_stand_in) if is_fdep else None,
           "encoder_description": model.encoder.description if is_fdep else "",
           "lambda": cfg.lam if is_fdep else None, "profile": cfg.profile}
    if cfg.vfm_cache is not None:
        row.update(vfm_cache=cfg.vfm_cache, crop_align=data.train.augment.align)
    deploy = None
    if is_fdep:
        row["deploy_branch"] = cfg.deploy_branch
        deploy = ((lambda m: MainBranch(m, data.normalize)) if cfg.deploy_branch == "main"
                  else (lambda m: m.export_host()))
    result = run_training(model, data, recipe, seed=seed, variant=variant, objective=objective,
                          deploy=deploy, eval_every=cfg.eval_every,
                          device=cfg.device, keep=keep, progress=progress, row=row, channels_last=cfg.channels_last,
                          hooks=() if progress else (PrintEvery(10),),
                          predictions_dir=predictions_folder(cfg, variant, seed, predictions_root)
                          if predictions_root is not None else None)
    result.row["deployed_params"] = count_params(result.deployed)
    if features is not None:
        result.extra["vfm_cache"] = features.summary()
    return result


def predictions_folder(cfg: FdepConfig, variant: str, seed: int, root: str | Path) -> Path:
    """``<root>/<dataset>/<stem>_<variant>_seed<seed>``: where notebook 03 looks for a model's maps
    (``root`` is ``<results>/predictions``)."""
    return Path(root) / cfg.dataset / f"{results_stem(cfg)}_{variant}_seed{seed}"


def results_stem(cfg: FdepConfig) -> str:
    """``<dataset>_<host>_<encoder>``, the file name of an experiment's results."""
    return f"{cfg.dataset}_{cfg.host}_{cfg.encoder}".replace("/", "-")


def provenance(cfg: FdepConfig) -> dict[str, Any]:
    """Parameters, recipe, seeds, versions and commit; take it before training."""
    return cfg.provenance()


def write_results(cfg: FdepConfig, runs: list[RunResult], out_dir: str | Path,
                  metadata: dict[str, Any] | None = None) -> dict[str, Path]:
    """The per-run CSV and the JSON (summary, histories, provenance) into ``out_dir``."""
    return engine_experiment.write_results(results_stem(cfg), runs, out_dir, metadata or provenance(cfg))


__all__ = ["DEPLOY_BRANCHES", "FdepConfig", "PROFILES", "check_paper_encoder", "protocol_title", "RunResult", "VARIANTS", "VFM_CACHE_MODES", "build_model",
           "feature_source", "load_data", "predictions_folder", "make_config", "provenance", "results_stem", "run_arm", "summarize",
           "vfm_align", "write_results"]
