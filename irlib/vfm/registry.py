"""The encoder registry: ``create_encoder(name, weights=None, **kwargs)`` and ``list_encoders()``."""

from __future__ import annotations

import os
from typing import Any, Callable

from irlib.errors import IrlibInputError
from irlib.vfm.base import FrozenEncoder

EncoderFactory = Callable[..., FrozenEncoder]
_REGISTRY: dict[str, EncoderFactory] = {}


def register_encoder(name: str) -> Callable[[EncoderFactory], EncoderFactory]:
    """Decorator: register ``fn(weights=None, **kwargs) -> FrozenEncoder`` under ``name``."""
    def deco(fn: EncoderFactory) -> EncoderFactory:
        if name in _REGISTRY:
            raise ValueError(f"encoder {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn
    return deco


def list_encoders() -> list[str]:
    """Names accepted by :func:`create_encoder`, sorted."""
    return sorted(_REGISTRY)


def create_encoder(name: str, weights: str | os.PathLike | None = None, **kwargs: Any) -> FrozenEncoder:
    """Build a frozen encoder.

    Args:
        name: one of :func:`list_encoders`.
        weights: ``None`` searches the usual places (see :mod:`irlib.vfm.weights`), a path loads
            that file, ``"random"`` builds the architecture untrained (a stand-in). Ignored by the
            ``*_random`` encoders.
        kwargs: encoder options, e.g. ``layer_indices``, ``resize``, ``seed``.
    """
    if name not in _REGISTRY:
        raise IrlibInputError(f"unknown encoder {name!r}; choose one of {list_encoders()}")
    encoder = _REGISTRY[name](weights=weights, **kwargs)
    encoder.name = name
    return encoder
