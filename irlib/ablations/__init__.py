"""Ablation-study definitions for notebook 06: each builds an :class:`irlib.engine.study.Study`
for a profile (``smoke``: seconds, CI; ``demo``: NUAA-SIRST on a CPU; ``paper``: GPU).

>>> from irlib.ablations import build_study
>>> from irlib.engine.study import run_study
>>> table = run_study(build_study("fdep_gate", "smoke"), "results/ablations")

The training is the method packages' (:mod:`irlib.fdep`, :mod:`irlib.simir`, :mod:`irlib.point`);
these modules only choose the variants.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from irlib.ablations import fdep, point, simir
from irlib.engine.study import Study
from irlib.errors import IrlibInputError

STUDIES: dict[str, Callable[..., Study]] = {**fdep.STUDIES, **simir.STUDIES, **point.STUDIES}
#: What notebook 06 runs when it is not told: in ``smoke`` (CI) one study or two per method, so the
#: notebook stays well under a minute (each of the others runs in seconds too); otherwise all.
DEFAULT_STUDIES: dict[str, list[str]] = {
    "smoke": ["fdep_coisd", "simir_distill", "point_clusters"],
    "demo": list(STUDIES), "paper": list(STUDIES)}


def list_studies() -> list[str]:
    """Names accepted by :func:`build_study`, FDEP first, then SimIR, then point supervision."""
    return list(STUDIES)


def build_study(name: str, profile: str | None = None, seeds: Sequence[int] | None = None,
                **settings: Any) -> Study:
    """The study ``name`` for ``profile``; ``settings`` (``None`` ones ignored) replace the method
    config's fields, e.g. ``epochs``."""
    if name not in STUDIES:
        raise IrlibInputError(f"unknown study {name!r}; choose from {list_studies()}")
    return STUDIES[name](profile, seeds, **{k: v for k, v in settings.items() if v is not None})


__all__ = ["DEFAULT_STUDIES", "STUDIES", "build_study", "list_studies"]
