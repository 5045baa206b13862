"""Where irlib finds real data and writes results, and which run profile is active.

Real datasets live outside the repository. They are found, in order, through an explicit
``root`` argument, the ``IRLIB_DATA`` environment variable, or ``../shared/data`` next to the
repository (the layout used by the project's own CI). Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROFILES = ("smoke", "demo", "paper")


def data_root(root: str | os.PathLike | None = None) -> Path | None:
    """Return the directory that holds real datasets, or ``None`` when none is available."""
    if root is not None:
        return Path(root).expanduser().resolve()
    env = os.environ.get("IRLIB_DATA")
    if env:
        return Path(env).expanduser().resolve()
    shared = REPO_ROOT.parent / "shared" / "data"
    return shared.resolve() if shared.is_dir() else None


def results_root(results_dir: str | os.PathLike | None = None) -> Path:
    """Directory for figures and tables: the argument, else ``$IRLIB_RESULTS``, else ``results/``."""
    if results_dir is None:
        results_dir = os.environ.get("IRLIB_RESULTS") or REPO_ROOT / "results"
    path = Path(results_dir).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_profile(profile: str | None = None) -> str:
    """Run profile: the argument, else ``$IRLIB_PROFILE``, else ``demo``.

    ``smoke`` is what CI runs (a minute or two on a 2-core CPU), ``demo`` a few minutes on a CPU,
    ``paper`` the published protocol (needs a GPU).
    """
    profile = profile or os.environ.get("IRLIB_PROFILE") or "demo"
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILES}")
    return profile
