"""Atomic training checkpoints: weights, optimiser, scheduler, RNG states and loop position.

Frozen submodules (``frozen = True``, e.g. every :class:`irlib.vfm.FrozenEncoder`) are left
out of the saved weights: they never change and can be hundreds of MB.
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from irlib.errors import IrlibInputError
from irlib.repro import atomic_write_bytes

FORMAT = "irlib.engine.checkpoint/1"


def frozen_prefixes(model: nn.Module) -> list[str]:
    """State-dict prefixes of the model's frozen submodules."""
    return [name + "." for name, m in model.named_modules() if name and getattr(m, "frozen", False) is True]


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` without the frozen submodules' entries."""
    prefixes = tuple(frozen_prefixes(model))
    return {k: v for k, v in model.state_dict().items() if not (prefixes and k.startswith(prefixes))}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Inverse of :func:`trainable_state`: every non-frozen key must be present, nothing extra."""
    prefixes = tuple(frozen_prefixes(model))
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not (prefixes and k.startswith(prefixes))]
    if missing or result.unexpected_keys:
        raise IrlibInputError(f"checkpoint {str(path)!r} does not fit this model: missing "
                              f"{missing[:5]}, unexpected {result.unexpected_keys[:5]}")


def capture_rng() -> dict[str, Any]:
    """RNG states of torch (CPU and CUDA), NumPy's legacy global generator and ``random``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """``torch.save`` into memory, then an atomic write: a kill never leaves a half file."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise IrlibInputError(f"cannot read checkpoint {str(path)!r}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise IrlibInputError(f"{str(path)!r} is not an irlib.engine training checkpoint")
    return ckpt
