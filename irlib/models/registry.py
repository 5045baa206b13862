"""Host registry: ``@register_model`` factories, ``create_model`` and self-describing checkpoints.

A host checkpoint written by :func:`save_host` is a ``torch.save`` file holding::

    {"model": "<registered name>", "kwargs": {...}, "state_dict": {...}, "irlib_version": "...",
     "meta": {...}}

so ``load_host(path)`` (or ``create_model(name, weights=path)``) rebuilds the same network
with no other code. A bare ``state_dict`` file is accepted by ``create_model`` too.

``meta`` (optional, plain JSON-like values; absent from files written before it existed) states
how the host is meant to be used, read back by :func:`read_host_meta`. The key read by
``irlib predict`` is ``"normalize": {"mean": [m], "std": [s]}`` on irlib's [0, 1] gray scale
(``Normalize.to_dict()``); ``"dataset"`` and ``"recipe"`` are customary provenance.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from irlib.errors import IrlibInputError
from irlib.repro import atomic_write_bytes

_MODEL_ENTRYPOINTS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None):
    """Register a host factory under ``name`` (default: the function name). Usable bare or called."""

    def wrap(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = (name or f.__name__).lower()
        old = _MODEL_ENTRYPOINTS.get(key)
        # a module reload (notebook autoreload) re-registers the same function: allowed
        if old is not None and (old.__module__, old.__qualname__) != (f.__module__, f.__qualname__):
            raise ValueError(f"model {key!r} is already registered by {old.__module__}.{old.__qualname__}")
        _MODEL_ENTRYPOINTS[key] = f
        return f

    return wrap(fn) if fn is not None else wrap


def list_models() -> list[str]:
    """Names of the registered hosts, sorted."""
    return sorted(_MODEL_ENTRYPOINTS)


def _entrypoint(name: str) -> Callable[..., nn.Module]:
    key = str(name).lower()
    if key not in _MODEL_ENTRYPOINTS:
        raise IrlibInputError(f"unknown model {name!r}; registered hosts: {', '.join(list_models())}")
    return _MODEL_ENTRYPOINTS[key]


def _read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise IrlibInputError(f"checkpoint file not found: {path}; pass the path of a file written by "
                              "irlib.models.save_host or a torch state_dict")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, foreign formats
        raise IrlibInputError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(obj, dict):
        raise IrlibInputError(f"checkpoint {path} holds a {type(obj).__name__}, expected a dict "
                              "(a state_dict or a save_host file)")
    return obj


def _state_dict_of(obj: dict[str, Any]) -> dict[str, torch.Tensor]:
    state = obj["state_dict"] if isinstance(obj.get("state_dict"), dict) else obj
    # strip the prefix nn.DataParallel / DistributedDataParallel adds
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_weights(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """Load a ``save_host`` file or a bare state_dict into ``model`` (CPU tensors, strict keys)."""
    state = _state_dict_of(_read_checkpoint(path))
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        raise IrlibInputError(f"checkpoint {path} does not fit {type(model).__name__} "
                              f"(built with {getattr(model, 'model_kwargs', {})}): {exc}") from exc
    return model


def create_model(name: str, weights: str | os.PathLike | None = None, **kwargs: Any) -> nn.Module:
    """Build the registered host ``name`` with ``kwargs``; load the file ``weights`` when given
    (``None``: PyTorch's initialisation). Same signature as :func:`irlib.vfm.create_encoder`.

    When the file is a :func:`save_host` checkpoint of the same model, its stored constructor
    kwargs are used, overridden by the ones passed here.
    """
    entry = _entrypoint(name)
    if weights is not None:
        obj = _read_checkpoint(weights)
        stored = obj.get("model")
        if isinstance(stored, str) and isinstance(obj.get("state_dict"), dict):
            if stored.lower() != str(name).lower():
                raise IrlibInputError(f"checkpoint {weights} holds model {stored!r}, not {name!r}; "
                                      f"use load_host({str(weights)!r}) or create_model({stored!r}, ...)")
            kwargs = {**dict(obj.get("kwargs") or {}), **kwargs}
    model = entry(**kwargs)
    model.model_name = str(name).lower()
    model.model_kwargs = dict(kwargs)
    if weights is not None:
        load_weights(model, weights)
    return model


def _plain_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` as plain JSON values (what ``torch.load(weights_only=True)`` reads back); objects
    with a ``to_dict()`` (e.g. :class:`irlib.engine.Normalize`) are converted."""
    if not isinstance(meta, dict):
        raise IrlibInputError(f"save_host: meta must be a dict, got {type(meta).__name__}")

    def plain(obj: Any) -> Any:
        if hasattr(obj, "to_dict"):
            return obj.to_dict()
        raise TypeError(f"{type(obj).__name__} is not a JSON value")

    try:
        return json.loads(json.dumps(meta, default=plain))
    except (TypeError, ValueError) as exc:
        raise IrlibInputError(f"save_host: meta must hold plain values (dict, list, str, number, "
                              f"bool, None): {exc}") from exc


def save_host(model: nn.Module, path: str | os.PathLike, name: str | None = None,
              kwargs: dict[str, Any] | None = None, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as a self-describing checkpoint (atomic write); return the path.

    ``name`` / ``kwargs`` default to those recorded by :func:`create_model`. ``meta`` (optional)
    is stored as plain JSON values and read back by :func:`read_host_meta`, e.g.
    ``{"normalize": {"mean": [0.396], "std": [0.136]}, "dataset": "NUAA-SIRST"}``.
    """
    name = name or getattr(model, "model_name", None)
    if name is None:
        raise IrlibInputError("save_host needs the registered model name: build the host with "
                              "irlib.models.create_model or pass name=...")
    _entrypoint(name)
    kwargs = dict(kwargs if kwargs is not None else getattr(model, "model_kwargs", {}))
    from irlib import __version__

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    payload = {"model": str(name).lower(), "kwargs": kwargs, "state_dict": state,
               "irlib_version": __version__}
    if meta is not None:
        payload["meta"] = _plain_meta(meta)
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def load_host(path: str | os.PathLike, **overrides: Any) -> nn.Module:
    """Rebuild a host written by :func:`save_host` (eval mode not set: the caller decides)."""
    obj = _read_checkpoint(path)
    name = obj.get("model")
    if not isinstance(name, str) or not isinstance(obj.get("state_dict"), dict):
        raise IrlibInputError(f"{path} is a bare state_dict without the model name; use "
                              "create_model(name, weights=path) instead")
    return create_model(name, weights=path, **overrides)


def read_host_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The ``meta`` dict stored by :func:`save_host` in ``path``; ``{}`` for a file written
    without it (older files, bare state_dicts)."""
    obj = _read_checkpoint(path)
    meta = obj.get("meta") if isinstance(obj.get("state_dict"), dict) else None
    return dict(meta) if isinstance(meta, dict) else {}
