"""What every study config shares: its data, its recipe and the fields that replace the recipe's,
seeds, device and profile (:class:`StudyConfig`), and how a profile and overrides make one
(:func:`config_from_profile`).

A method's config subclasses :class:`StudyConfig` with its own fields (and may redeclare
``recipe`` with another default):

>>> from dataclasses import dataclass
>>> @dataclass
... class MyConfig(StudyConfig):
...     host: str = "acm"
>>> cfg = config_from_profile(MyConfig, {"demo": {"epochs": 5}}, "demo", {"host": "alcnet"}, "my settings")
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, TypeVar

import numpy as np

from irlib.engine import experiment as engine_experiment
from irlib.engine.experiment import DataSettings, DataSource
from irlib.engine.recipes import Recipe, get_recipe
from irlib.errors import IrlibInputError
from irlib.paths import resolve_profile

#: Config fields that replace the recipe's fields of the same name when set (those a config has).
RECIPE_OVERRIDES = ("epochs", "batch_size", "crop_size", "lr", "weight_decay", "loss", "schedule", "head_prior")


@dataclass
class StudyConfig(DataSource):
    """The settings every study shares (a profile fills the ones left as ``None``).

    Data fields are :class:`~irlib.engine.experiment.DataSource`'s (the engine's validation split
    stays off); ``recipe`` names a recipe of :mod:`irlib.engine.recipes`, whose fields of
    :data:`RECIPE_OVERRIDES` the config's fields of the same name replace when set.
    """

    recipe: str = "cpu_demo"
    epochs: int | None = None
    batch_size: int | None = None
    crop_size: int | None = None
    lr: float | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    device: str = "auto"
    profile: str = "demo"

    def __post_init__(self) -> None:
        self.seeds = [int(s) for s in np.atleast_1d(self.seeds)]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def training_recipe(self) -> Recipe:
        """The named recipe with this config's replacements."""
        names = {f.name for f in fields(self)}
        return get_recipe(self.recipe, **{k: getattr(self, k) for k in RECIPE_OVERRIDES if k in names})

    def data_settings(self) -> DataSettings:
        """The engine's data settings (a config's own ``val_fraction`` is not the engine's split)."""
        return DataSettings(**{f.name: getattr(self, f.name) for f in fields(DataSource)})

    def provenance(self) -> dict[str, Any]:
        """Parameters, recipe, seeds, versions and commit; take it before training."""
        return engine_experiment.provenance(self.as_dict(), self.training_recipe(), self.seeds)


C = TypeVar("C", bound=StudyConfig)


def config_from_profile(cls: type[C], profiles: Mapping[str, Mapping[str, Any]], profile: str | None,
                        overrides: Mapping[str, Any], what: str = "settings") -> C:
    """``cls`` from ``profiles[profile]`` (profile resolved by :func:`irlib.paths.resolve_profile`)
    with every non-``None`` override applied; an override that is not a field of ``cls`` raises
    :class:`IrlibInputError` ("unknown <what> ...")."""
    profile = resolve_profile(profile)
    known = {f.name for f in fields(cls)}
    unknown = set(overrides) - known
    if unknown:
        raise IrlibInputError(f"unknown {what} {sorted(unknown)}; known: {sorted(known)}")
    values = {**copy.deepcopy(dict(profiles[profile])), **{k: v for k, v in overrides.items() if v is not None}}
    return cls(profile=profile, **values)


__all__ = ["RECIPE_OVERRIDES", "StudyConfig", "config_from_profile"]
