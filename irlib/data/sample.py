"""The one record every irlib dataset yields: a named gray image and its boolean target mask."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Sample:
    """One image of a SIRST dataset.

    ``image`` is float32 ``(H, W)`` in [0, 1] (the ``raw`` input of the architecture contract);
    ``mask`` is bool ``(H, W)``, True on target pixels.
    """

    name: str
    image: np.ndarray
    mask: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the image and of its mask."""
        return self.image.shape[0], self.image.shape[1]
