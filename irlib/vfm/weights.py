"""Finding and reading encoder weight files on disk. Nothing here ever downloads.

Search order for ``weights=None``: the ``IRLIB_WEIGHTS`` directory, ``../shared/weights``
next to the repository, ``~/.cache/irlib/weights``, then encoder-specific caches (the torch hub
checkpoint folder, the Hugging Face hub cache) when the file is already there.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path
from typing import Iterable

import torch

from irlib.errors import IrlibInputError
from irlib.paths import REPO_ROOT

ENV_VAR = "IRLIB_WEIGHTS"
RANDOM = "random"


def weights_dirs() -> list[Path]:
    """Directories searched for weight files, in order."""
    dirs = []
    env = os.environ.get(ENV_VAR)
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(REPO_ROOT.parent / "shared" / "weights")
    dirs.append(Path.home() / ".cache" / "irlib" / "weights")
    return dirs


def torch_hub_checkpoints() -> Path:
    """Where ``torch.hub`` keeps downloaded checkpoints (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder (``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or the default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".cache" / "huggingface") / "hub"


def hf_snapshot_files(repo_id: str, filenames: Iterable[str]) -> list[Path]:
    """Files of a model already in the Hugging Face cache (any snapshot), without network."""
    snapshots = hf_hub_cache() / ("models--" + repo_id.replace("/", "--")) / "snapshots"
    if not snapshots.is_dir():
        return []
    return [p for name in filenames for p in sorted(snapshots.glob(f"*/{name}"))]


def package_file(distribution: str, filename: str) -> Path | None:
    """A file shipped inside an installed pip distribution, found through its file list."""
    try:
        files = metadata.distribution(distribution).files or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == filename:
            path = Path(f.locate())
            if path.is_file():
                return path
    return None


def resolve_weights(encoder: str, weights: str | os.PathLike | None, filenames: list[str],
                    extra: Iterable[Path] = (), hint: str = "") -> Path:
    """The weight file for ``encoder``: the given path, else the first file found on disk.

    Raises :class:`IrlibInputError` naming every place searched and how to fix it.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise IrlibInputError(f"{encoder}: weights file {str(path)!r} does not exist. "
                                  f"Pass the path of {filenames[0]} or leave weights=None to search "
                                  f"${ENV_VAR}.")
        return path
    candidates = [d / name for d in weights_dirs() for name in filenames] + list(extra)
    for path in candidates:
        if path.is_file():
            return path
    env = os.environ.get(ENV_VAR)
    searched = "\n  ".join(str(p) for p in candidates)
    raise IrlibInputError(
        f"{encoder}: no weights found and irlib never downloads them. Put {filenames[0]} into the "
        f"directory named by ${ENV_VAR} ({'currently ' + env if env else 'unset'}) or "
        f"~/.cache/irlib/weights, or pass weights='/path/to/{filenames[0]}'. {hint}"
        f"Use weights='{RANDOM}' for an untrained stand-in (timing and smoke runs only).\n"
        f"Searched:\n  {searched}")


def load_state_dict(path: str | os.PathLike, encoder: str = "") -> dict[str, torch.Tensor]:
    """Read a state dict (``.pth``/``.pt``/``.bin`` via ``torch.load(weights_only=True)`` or
    ``.safetensors``); wrappers ``{"model": ...}`` / ``{"state_dict": ...}`` are unwrapped."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure means the same thing to the user
        raise IrlibInputError(f"{encoder}: cannot read weights file {str(path)!r} as a PyTorch "
                              f"state dict ({type(exc).__name__}: {exc})") from exc
    for key in ("model", "state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise IrlibInputError(f"{encoder}: {str(path)!r} does not hold a state dict of tensors")
    return sd


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike,
                encoder: str, expected_format: str) -> None:
    """``module.load_state_dict(state)`` with an error that lists missing/unexpected/mis-shaped keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        def few(items: list[str]) -> str:
            return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")

        parts = [f"{len(missing)} missing keys: {few(missing)}" if missing else "",
                 f"{len(unexpected)} unexpected keys: {few(unexpected)}" if unexpected else "",
                 f"shape mismatches: {few(shapes)}" if shapes else ""]
        raise IrlibInputError(f"{encoder}: {str(path)!r} does not match the model; expected "
                              f"{expected_format}. " + "; ".join(p for p in parts if p))
    module.load_state_dict(state, strict=True)
