"""Ablation studies, method-agnostic: one base config, named variants of overrides, seeds.

A :class:`Study` trains every variant with every seed through its ``train_fn(config, seed)`` (a
method's own training run, returning :class:`~irlib.engine.experiment.RunResult`);
:func:`run_study` returns one tidy row per run and writes ``<name>.csv`` / ``<name>.json`` with
provenance through :func:`~irlib.engine.experiment.write_results`; :func:`plot_study` draws it.

>>> study = Study("gate", base, {"none": {}, "tanh": {"samf_gate": "tanh"}}, [0, 1], train_fn)
>>> table = run_study(study, out_dir)
>>> fig = plot_study(table)
>>> effect_sizes(table)             # each variant minus the base, paired by seed
"""

from __future__ import annotations

import copy
import json
import re
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from irlib.engine.experiment import RunResult, provenance, write_results
from irlib.errors import IrlibInputError
from irlib.repro import seed_everything

TrainFn = Callable[[dict[str, Any], int], RunResult]
METRICS = ("IoU", "nIoU", "Pd", "Fa_1e-6", "HSE")
COLUMNS = ("study", "variant", "seed", *METRICS, "params", "train_time_s", "overrides", "profile")


@dataclass
class Study:
    """An ablation: ``variants`` maps a name to overrides of ``base`` (a flat dict of settings).

    An override of a dict-valued setting is merged into it (``{"samf_options": {"gate": ..}}``
    keeps the base's other options); any other value replaces the base's. ``check(config)``, when
    given, validates a variant's config before anything trains (raise on a bad one). ``title`` is a
    one-line description for tables and figures.
    """

    name: str
    base: dict[str, Any]
    variants: Mapping[str, Mapping[str, Any]]
    seeds: Sequence[int]
    train_fn: TrainFn
    profile: str = "demo"
    check: Callable[[dict[str, Any]], Any] | None = None
    title: str = ""

    def __post_init__(self) -> None:
        if not self.variants:
            raise IrlibInputError(f"study {self.name!r} has no variants")
        if not self.seeds:
            raise IrlibInputError(f"study {self.name!r} has no seeds")
        self.seeds = [int(s) for s in self.seeds]
        for name in self.variants:
            self.config(name)  # unknown settings raise here

    def config(self, variant: str) -> dict[str, Any]:
        """The base with ``variant``'s overrides applied (a fresh copy)."""
        overrides = self.variants[variant]
        if not isinstance(overrides, Mapping):
            raise IrlibInputError(f"study {self.name!r}, variant {variant!r}: overrides must be a dict, "
                                  f"got {type(overrides).__name__}")
        unknown = sorted(set(overrides) - set(self.base))
        if unknown:
            raise IrlibInputError(f"study {self.name!r}, variant {variant!r}: unknown settings {unknown}; "
                                  f"known: {sorted(self.base)}")
        cfg = copy.deepcopy(self.base)
        for key, value in copy.deepcopy(dict(overrides)).items():
            cfg[key] = {**cfg[key], **value} if isinstance(cfg[key], dict) and isinstance(value, dict) else value
        return cfg

    def checked_configs(self) -> dict[str, dict[str, Any]]:
        """Every variant's config, each passed through ``check``; a failure raises
        :class:`~irlib.errors.IrlibInputError` naming the variant."""
        out = {}
        for name in self.variants:
            cfg = self.config(name)
            if self.check is not None:
                try:
                    self.check(copy.deepcopy(cfg))
                except (ValueError, TypeError, KeyError) as exc:
                    raise IrlibInputError(f"study {self.name!r}, variant {name!r}: {exc}") from exc
            out[name] = cfg
        return out


def sweep(base: Mapping[str, Any], key: str, values: Sequence[Any], name: Callable[[Any], str] = str,
          default: Any = None) -> dict[str, dict[str, Any]]:
    """Variants that set ``key`` to each of ``values``, by ``name(value)``. ``"a.b"`` is entry ``b``
    of the dict setting ``a`` (``default`` when the base has no such entry). The base's own value
    is the reference (no overrides), put first when ``values`` lacks it."""
    outer, _, inner = key.partition(".")
    if outer not in base:
        raise IrlibInputError(f"sweep: unknown setting {outer!r}; known: {sorted(base)}")
    current = base[outer].get(inner, default) if inner else base[outer]
    ordered = list(values) if current in values else [current, *values]
    return {name(v): {} if v == current else {outer: {inner: v} if inner else v} for v in ordered}


def overrides_text(overrides: Mapping[str, Any]) -> str:
    """``"key=value, ..."`` (``"base"`` for none)."""
    return ", ".join(f"{k}={v}" for k, v in overrides.items()) or "base"


def study_table(runs: Sequence[RunResult]) -> Any:
    """The tidy table of :data:`COLUMNS` (those present), one row per run."""
    import pandas as pd

    frame = pd.DataFrame([r.row for r in runs])
    return frame[[c for c in COLUMNS if c in frame.columns]]


def combine_study_tables(paths: Sequence[str | Path]) -> Any:
    """The ``<study>.csv`` files of one study run in separate processes (other seeds, say) as one
    table, variants in first-seen order, then by seed; refuses files of different studies or
    profiles and a (variant, seed) run that appears twice."""
    import pandas as pd

    if not paths:
        raise IrlibInputError("combine_study_tables: no files given")
    names = [str(p) for p in paths]
    table = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    for key in ("study", "profile"):
        values = sorted({str(v) for v in table[key].unique()})
        if len(values) > 1:
            raise IrlibInputError(f"combine_study_tables: the files mix {key}s {values}: {names}")
    twice = table[table.duplicated(["variant", "seed"], keep=False)]
    if len(twice):
        runs = sorted(set(zip(twice["variant"], twice["seed"])))
        raise IrlibInputError(f"combine_study_tables: runs {runs} appear in more than one file: {names}")
    order = {v: i for i, v in enumerate(dict.fromkeys(table["variant"]))}
    return table.sort_values(["variant", "seed"], key=lambda c: c.map(order) if c.name == "variant" else c,
                             kind="stable").reset_index(drop=True)


def effect_sizes(table: Any, reference: str | None = None,
                 metrics: Sequence[str] = ("IoU", "nIoU", "Pd", "Fa_1e-6", "HSE")) -> Any:
    """Each variant minus the ``reference`` variant, paired by seed, then averaged: one row per variant
    with ``seeds``, ``<metric> Δ`` (mean over seeds) and ``<metric> Δ std`` (sample std, NaN for one
    seed). The default reference is the study's base (the variant without overrides, ``overrides ==
    "base"``), else the table's first variant."""
    import pandas as pd

    from irlib.engine.tables import paired_differences

    variants = list(dict.fromkeys(table["variant"]))
    if reference is None:
        base = table.loc[table["overrides"] == "base", "variant"] if "overrides" in table else []
        reference = base.iloc[0] if len(base) else variants[0]
    if reference not in variants:
        raise IrlibInputError(f"effect_sizes: no variant {reference!r} in the table (variants: {variants})")
    rows = []
    for v in variants:
        if v == reference:
            continue
        diff = paired_differences(table, "variant", v, reference, metrics=metrics, keys=("seed",))
        row: dict[str, Any] = {"variant": v, "reference": reference, "seeds": len(diff)}
        for m in metrics:
            col = diff[f"{m} {v} − {reference}"]
            row[f"{m} Δ"] = float(col.mean()) if len(col) else float("nan")
            row[f"{m} Δ std"] = float(col.std(ddof=1)) if len(col) > 1 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def run_study(study: Study, out_dir: str | Path | None = None, cache: dict[str, RunResult] | None = None,
              weights: bool = False) -> Any:
    """Train every variant with every seed (variants outer) and return :func:`study_table`.

    Every variant is checked before the first one trains. Each run starts from
    :func:`~irlib.repro.seed_everything` (seed). With ``out_dir``, ``<name>.csv`` and ``<name>.json``
    (rows, summary over seeds, histories, provenance: parameters, seeds, versions, commit,
    profile) are written there. ``cache`` (a dict shared between studies) reuses a run whose
    config, seed and ``train_fn`` (by module and name) were already trained, e.g. a reference
    variant common to studies. With ``weights`` (and ``out_dir``) every run's deployed model also
    goes to ``weights/<study>_<variant>_seed<s>.pt`` (:func:`irlib.models.save_host`, with the
    ``weights_meta`` its train function put in ``RunResult.extra``: normalisation, training set).
    """
    configs = study.checked_configs()
    meta = provenance({"study": study.name, "title": study.title, "base": study.base,
                       "variants": {k: dict(v) for k, v in study.variants.items()}}, seeds=study.seeds)
    meta["profile"] = study.profile
    runs = []
    for name, cfg in configs.items():
        for seed in study.seeds:
            fn = study.train_fn
            key = json.dumps([f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}", cfg, seed],
                             sort_keys=True, default=str)
            if cache is not None and key in cache:
                result = cache[key]
            else:
                seed_everything(seed)
                result = study.train_fn(copy.deepcopy(cfg), seed)
                if cache is not None:
                    cache[key] = result
            params = result.row.get("params") or sum(p.numel() for p in result.deployed.parameters())
            row = {**result.row, "study": study.name, "variant": name, "seed": seed, "params": params,
                   "overrides": overrides_text(study.variants[name]), "profile": study.profile}
            runs.append(replace(result, variant=name, seed=seed, row=row))
    if out_dir is not None:
        write_results(study.name, runs, out_dir, meta)
        if weights:
            save_weights(study.name, runs, Path(out_dir) / "weights", meta)
    table = study_table(runs)
    table.attrs.update(title=study.title or study.name, profile=study.profile)
    return table


def save_weights(stem: str, runs: Sequence[RunResult], folder: Path, provenance: dict[str, Any]) -> list[Path]:
    """Each run's deployed model as ``<folder>/<stem>_<variant>_seed<s>.pt`` with its weights meta.

    A model that is not a registered host (FDEP's main branch with its frozen encoder) cannot be
    rebuilt from a checkpoint; it is left out with a printed line."""
    from irlib.models import save_host

    paths = []
    for r in runs:
        name = re.sub(r"[^A-Za-z0-9.+-]+", "_", f"{stem}_{r.variant}_seed{r.seed}")
        if getattr(r.deployed, "model_name", None) is None:
            print(f"{name}: weights not saved, the deployed {type(r.deployed).__name__} is not a registered host")
            continue
        meta = {**r.extra.get("weights_meta", {}), "study": stem, "variant": r.variant,
                "git_commit": provenance.get("git_commit")}
        paths.append(save_host(r.deployed.cpu(), folder / f"{name}.pt", meta=meta))
    return paths


def plot_study(table: Any, title: str | None = None, metrics: Sequence[str] = ("IoU", "nIoU", "Pd", "Fa_1e-6")) -> Any:
    """One figure: a panel per metric, variants along x, mean ± std over seeds (bar and error
    bar; std only with two seeds or more) and every seed's value as a point."""
    import matplotlib.pyplot as plt
    import numpy as np

    metrics = [m for m in metrics if m in table.columns]
    variants = list(dict.fromkeys(table["variant"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(2.0, 0.7 * len(variants) + 1.2) * len(metrics), 3.2),
                             squeeze=False)
    x = np.arange(len(variants))
    for ax, metric in zip(axes[0], metrics):
        groups = [table.loc[table["variant"] == v, metric].astype(float).to_numpy() for v in variants]
        means = [g.mean() for g in groups]
        stds = [g.std(ddof=1) if len(g) > 1 else 0.0 for g in groups]
        ax.bar(x, means, yerr=stds, capsize=3, color="tab:blue", alpha=0.35, edgecolor="tab:blue")
        for i, g in enumerate(groups):
            offsets = np.linspace(-0.15, 0.15, len(g)) if len(g) > 1 else np.zeros(1)
            ax.scatter(i + offsets, g, s=12, color="k", zorder=3)
        ax.set_xticks(x, variants, rotation=30, ha="right", fontsize=7)
        ax.set_title({"IoU": "IoU (%)", "nIoU": "nIoU (%)", "Pd": "Pd (%)", "Fa_1e-6": "Fa (1e-6)"}.get(metric, metric),
                     fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    seeds = sorted(set(table["seed"]))
    label = title or table.attrs.get("title") or str(table["study"].iloc[0])
    profile = table.attrs.get("profile") or (table["profile"].iloc[0] if "profile" in table else "")
    suffix = f" | seeds {seeds}" + ("" if f"profile {profile}" in label else f" | profile {profile}")
    fig.suptitle(textwrap.fill(label + suffix, 140), fontsize=8)
    fig.tight_layout()
    return fig


__all__ = ["COLUMNS", "METRICS", "Study", "TrainFn", "combine_study_tables", "effect_sizes", "overrides_text",
           "plot_study", "run_study", "save_weights", "study_table", "sweep"]
