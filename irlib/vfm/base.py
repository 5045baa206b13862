"""The frozen-encoder interface: one output type and one base class every encoder subclasses."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from irlib.errors import IrlibInputError
from irlib.vfm.preprocess import Resize, fit_input, to_three_channels


@dataclass
class EncoderOutput:
    """Feature maps (shallow to deep) with their strides, and one global vector per image.

    ``features[i]`` is ``(B, feature_channels[i], h_i, w_i)`` and covers the whole input image:
    padding added by the resize policy is cropped away, so ``h_i == ceil(H_enc / strides[i])``
    where ``H_enc`` is the image height after the policy's resizing (``H`` for ``"pad"``).
    """

    features: list[torch.Tensor]
    strides: list[int]
    global_feature: torch.Tensor


def evenly_spaced_blocks(depth: int, count: int = 4) -> list[int]:
    """``count`` block indices spread evenly over ``depth`` blocks, ending at the last block.

    ViT-S/B (12 blocks) -> [2, 5, 8, 11]; ViT-L (24) -> [5, 11, 17, 23]; ViT-H (32) -> [7, 15, 23, 31].
    """
    count = min(count, depth)
    return [round((i + 1) * depth / count) - 1 for i in range(count)]


def check_indices(layer_indices: list[int] | tuple[int, ...], available: int, what: str) -> list[int]:
    """Validate ``layer_indices`` against ``available`` blocks/stages; negatives count from the end."""
    out = []
    for i in layer_indices:
        j = i + available if i < 0 else i
        if not 0 <= j < available:
            raise IrlibInputError(f"layer_indices={list(layer_indices)}: {i} is out of range for "
                                  f"{available} {what} (0..{available - 1})")
        out.append(j)
    if len(out) == 0 or out != sorted(set(out)):
        raise IrlibInputError(f"layer_indices={list(layer_indices)} must be non-empty, increasing "
                              "and without repeats")
    return out


def crop_to(t: torch.Tensor, valid_hw: tuple[int, int], stride: int) -> torch.Tensor:
    """Crop a feature map to the cells that cover the valid (unpadded) input region."""
    h, w = math.ceil(valid_hw[0] / stride), math.ceil(valid_hw[1] / stride)
    return t[..., :h, :w]


class FrozenEncoder(nn.Module):
    """A pretrained (or stand-in) image encoder that never trains (unless :meth:`unfreeze` is called).

    Subclasses set ``feature_channels``, ``strides``, ``layer_indices``, ``global_dim``,
    ``is_stand_in`` and ``description``, hold their network, call :meth:`freeze` at the end of
    ``__init__`` and implement :meth:`encode`, which sees preprocessed input.

    Args:
        mean, std: per-channel normalisation, on the [0, 1] scale of the raw input.
        resize: input policy, see :func:`irlib.vfm.preprocess.fit_input`.
        multiple: the network's patch size / total stride that the input must be a multiple of.
    """

    feature_channels: list[int]
    strides: list[int]
    layer_indices: list[int]
    global_dim: int
    is_stand_in: bool
    description: str
    name: str = ""
    feature_unit: str = "layer"  # what ``layer_indices`` counts: "block" (ViTs) or "stage" (CNNs)
    frozen = True  # irlib.engine leaves modules with frozen=True out of training checkpoints

    def __init__(self, mean: tuple[float, float, float], std: tuple[float, float, float],
                 resize: Resize, multiple: int) -> None:
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.resize = resize
        self.multiple = multiple

    @property
    def feature_names(self) -> list[str]:
        """One label per feature map, shallow to deep (``"block 2"``, ``"stage 1"``, SAM's ``"neck"``),
        so messages and results can say exactly which maps were used."""
        return [f"{self.feature_unit} {i}" for i in self.layer_indices]

    def freeze(self) -> FrozenEncoder:
        """Turn off gradients for every parameter and switch to eval mode (for good, unless
        :meth:`unfreeze` is called)."""
        self.frozen = True
        for p in self.parameters():
            p.requires_grad_(False)
        return super().train(False)

    def unfreeze(self) -> FrozenEncoder:
        """This encoder made trainable, for fine-tuning: gradients on, ``train()`` obeyed, the
        forward pass recorded by autograd, and (``frozen=False`` on this instance) its weights kept
        in irlib.engine checkpoints. :meth:`freeze` undoes it."""
        self.frozen = False
        for p in self.parameters():
            p.requires_grad_(True)
        return self

    def train(self, mode: bool = True) -> FrozenEncoder:
        """Frozen encoders stay in eval mode whatever the caller asks (BatchNorm, dropout);
        unfrozen ones follow ``mode``."""
        return super().train(mode and not self.frozen)

    def preprocess(self, raw: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Raw (B, 1|3, H, W) in [0, 1] -> normalised, resized/padded 3-channel input + valid size."""
        who = self.name or type(self).__name__
        if not isinstance(raw, torch.Tensor) or raw.ndim != 4 or raw.shape[1] not in (1, 3):
            shape = tuple(raw.shape) if isinstance(raw, torch.Tensor) else type(raw).__name__
            raise IrlibInputError(f"{who}: expected raw images of shape (B, 1 or 3, H, W) in [0, 1], "
                                  f"got {shape}")
        if not raw.is_floating_point():
            raise IrlibInputError(f"{who}: raw images must be float in [0, 1], got {raw.dtype}")
        x = to_three_channels(raw.to(self.pixel_mean.device, self.pixel_mean.dtype))
        return fit_input(x, self.pixel_mean, self.pixel_std, self.resize, self.multiple)

    def encode(self, x: torch.Tensor, valid_hw: tuple[int, int]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Preprocessed input -> (feature maps already cropped to ``valid_hw``, global vectors)."""
        raise NotImplementedError

    def forward(self, raw: torch.Tensor) -> EncoderOutput:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            x, valid_hw = self.preprocess(raw)
            features, global_feature = self.encode(x, valid_hw)
        return EncoderOutput(features=features, strides=list(self.strides), global_feature=global_feature)

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, channels={self.feature_channels}, strides={self.strides}, "
                f"resize={self.resize!r}, stand_in={self.is_stand_in}")
