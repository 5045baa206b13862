"""Where :class:`irlib.fdep.cache.FrozenFeatures` keeps whole-image frozen-encoder feature maps.

Two stores with the same two methods, ``get(key) -> list[Tensor] | None`` and
``put(key, maps) -> bool`` (False: not stored):

* :class:`MemoryStore`: a dict in this process with a byte bound. When full it refuses new
  entries instead of evicting old ones (no LRU): the trainer visits every image once per epoch in
  a fresh random order, so under LRU an entry is usually evicted before its next use about an
  epoch later, and the hit rate falls below the share of entries that fit; refusing keeps a fixed
  share resident and hits it every time.
* :class:`DiskStore`: one ``torch.save`` file per key in a directory (written atomically), no
  bound; it survives the process, so seeds and reruns share it.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import torch

from irlib.repro import atomic_write_bytes

Key = tuple[str, int]  # (image name, flip variant)


def nbytes(maps: list[torch.Tensor]) -> int:
    """Bytes held by a list of tensors."""
    return sum(t.numel() * t.element_size() for t in maps)


class MemoryStore:
    """In-memory maps up to ``max_bytes``; refuses (``put`` returns False) when one would not fit."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self._maps: dict[Key, list[torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self._maps)

    def get(self, key: Key) -> list[torch.Tensor] | None:
        return self._maps.get(key)

    def put(self, key: Key, maps: list[torch.Tensor]) -> bool:
        size = nbytes(maps)
        if key in self._maps or self.bytes + size > self.max_bytes:
            return False
        self._maps[key] = maps
        self.bytes += size
        return True


class DiskStore:
    """Maps saved under ``directory`` as ``<name>_v<variant>.pt`` (name made file-safe)."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, key: Key) -> Path:
        name, variant = key
        return self.directory / f"{re.sub(r'[^A-Za-z0-9._-]', '_', name)}_v{int(variant)}.pt"

    def get(self, key: Key) -> list[torch.Tensor] | None:
        path = self.path(key)
        if not path.is_file():
            return None
        return list(torch.load(path, map_location="cpu", weights_only=True))

    def put(self, key: Key, maps: list[torch.Tensor]) -> bool:
        buf = io.BytesIO()
        torch.save([t.contiguous() for t in maps], buf)
        atomic_write_bytes(self.path(key), buf.getvalue())
        return True
