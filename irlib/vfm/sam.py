"""SAM ViT-B/L/H image encoders through segment-anything, from a local checkpoint.

The checkpoint is the official release (``sam_vit_b_01ec64.pth``, ``sam_vit_l_0b3195.pth``,
``sam_vit_h_4b8939.pth``), a state dict of the whole SAM with keys ``image_encoder.*``,
``prompt_encoder.*`` and ``mask_decoder.*``; only ``image_encoder.*`` is used. A state dict of the
image encoder alone (keys without the prefix) is accepted too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from segment_anything import sam_model_registry
from segment_anything.build_sam import _build_sam
from segment_anything.modeling import ImageEncoderViT

from irlib.vfm.base import FrozenEncoder, check_indices, crop_to, evenly_spaced_blocks
from irlib.vfm.preprocess import SAM_MEAN, SAM_STD, Resize
from irlib.vfm.registry import register_encoder
from irlib.vfm.util import seeded
from irlib.vfm.weights import RANDOM, load_state_dict, load_strict, resolve_weights

_SAM = {
    # registry name: (sam_model_registry key, official file, human name, default global blocks)
    "sam_vit_b": ("vit_b", "sam_vit_b_01ec64.pth", "SAM ViT-B", [2, 5, 8, 11]),
    "sam_vit_l": ("vit_l", "sam_vit_l_0b3195.pth", "SAM ViT-L", [5, 11, 17, 23]),
    "sam_vit_h": ("vit_h", "sam_vit_h_4b8939.pth", "SAM ViT-H", [7, 15, 23, 31]),
}
_FORMAT = ("SAM's official checkpoint (keys image_encoder.*, prompt_encoder.*, mask_decoder.*) "
           "or an image-encoder-only state dict")


def _resize_pos(pos: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """SAM's absolute position embedding (1, h, w, C), bicubically resized to another grid."""
    if tuple(pos.shape[1:3]) == tuple(size):
        return pos
    pos = F.interpolate(pos.permute(0, 3, 1, 2), size=size, mode="bicubic", align_corners=False)
    return pos.permute(0, 2, 3, 1)


class SamEncoder(FrozenEncoder):
    """SAM's ImageEncoderViT as a frozen encoder.

    Features: the (B, embed_dim, H/16, W/16) outputs of the blocks in ``layer_indices`` (default:
    SAM's four global-attention blocks), followed, when ``include_neck``, by the 256-channel neck
    output (SAM's image embedding). The global vector is the spatial mean of the last feature map.
    Default ``resize=1024`` is SAM's own policy (longest side to 1024, pad to 1024 x 1024); other
    sizes work too, with the position embedding resized (bicubic) and the relative position
    tables interpolated by segment-anything itself.
    """

    feature_unit = "block"

    def __init__(self, image_encoder: ImageEncoderViT, *, description: str, is_stand_in: bool,
                 layer_indices: list[int] | None = None, resize: Resize = 1024,
                 include_neck: bool = True) -> None:
        patch = image_encoder.patch_embed.proj.kernel_size[0]
        super().__init__(SAM_MEAN, SAM_STD, resize, multiple=patch)
        self.sam = image_encoder
        depth = len(image_encoder.blocks)
        embed_dim = image_encoder.patch_embed.proj.out_channels
        chosen = evenly_spaced_blocks(depth) if layer_indices is None else layer_indices
        self.layer_indices = check_indices(chosen, depth, "blocks")
        self.include_neck = include_neck
        self.feature_channels = [embed_dim] * len(self.layer_indices)
        if include_neck:
            self.feature_channels.append(image_encoder.neck[0].out_channels)
        self.strides = [patch] * len(self.feature_channels)
        self.global_dim = self.feature_channels[-1]
        self.description = description
        self.is_stand_in = is_stand_in
        self.freeze()

    @property
    def feature_names(self) -> list[str]:
        """``["block 2", "block 5", "block 8", "block 11", "neck"]`` for SAM ViT-B's defaults."""
        return super().feature_names + (["neck"] if self.include_neck else [])

    def encode(self, x: torch.Tensor, valid_hw: tuple[int, int]) -> tuple[list[torch.Tensor], torch.Tensor]:
        enc = self.sam
        t = enc.patch_embed(x)  # (B, h, w, C)
        if enc.pos_embed is not None:
            t = t + _resize_pos(enc.pos_embed, tuple(t.shape[1:3]))
        last = len(enc.blocks) - 1 if self.include_neck else self.layer_indices[-1]
        feats = []
        for i, blk in enumerate(enc.blocks[: last + 1]):
            t = blk(t)
            if i in self.layer_indices:
                feats.append(t.permute(0, 3, 1, 2))
        if self.include_neck:
            feats.append(enc.neck(t.permute(0, 3, 1, 2)))
        feats = [crop_to(f, valid_hw, s) for f, s in zip(feats, self.strides)]
        return feats, feats[-1].mean(dim=(2, 3))


def build_image_encoder(variant: str, embed_dim: int | None = None, depth: int | None = None,
                        num_heads: int | None = None,
                        global_attn_indexes: list[int] | None = None) -> ImageEncoderViT:
    """SAM's image encoder: ``sam_model_registry[variant]`` as released, or (for tests) the same
    builder with other sizes (``embed_dim``, ``depth``, ``num_heads``, ``global_attn_indexes``)."""
    if embed_dim is None and depth is None and num_heads is None and global_attn_indexes is None:
        return sam_model_registry[variant](checkpoint=None).image_encoder
    base = {"vit_b": (768, 12, 12), "vit_l": (1024, 24, 16), "vit_h": (1280, 32, 16)}[variant]
    embed_dim, depth, num_heads = embed_dim or base[0], depth or base[1], num_heads or base[2]
    gai = global_attn_indexes if global_attn_indexes is not None else evenly_spaced_blocks(depth)
    return _build_sam(encoder_embed_dim=embed_dim, encoder_depth=depth, encoder_num_heads=num_heads,
                      encoder_global_attn_indexes=gai, checkpoint=None).image_encoder


def load_sam_weights(image_encoder: ImageEncoderViT, path: str | os.PathLike, encoder: str) -> None:
    """Load the ``image_encoder.*`` part of a SAM checkpoint (strict, clear errors)."""
    state = load_state_dict(path, encoder)
    prefix = "image_encoder."
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    load_strict(image_encoder, state, path, encoder, _FORMAT)


def _sam(name: str, weights: str | os.PathLike | None, layer_indices: list[int] | None = None,
         resize: Resize = 1024, include_neck: bool = True, seed: int = 0, **arch: Any) -> SamEncoder:
    variant, filename, human, global_blocks = _SAM[name]
    with seeded(seed):
        image_encoder = build_image_encoder(variant, **arch)
    if layer_indices is None:  # SAM's global-attention blocks (evenly spaced for the releases)
        layer_indices = list(arch.get("global_attn_indexes") or []) or (None if arch else global_blocks)
    if weights == RANDOM:
        description = f"{human} image encoder with random weights (stand-in, not a foundation model)"
        return SamEncoder(image_encoder, description=description, is_stand_in=True,
                          layer_indices=layer_indices, resize=resize, include_neck=include_neck)
    path = resolve_weights(name, weights, [filename],
                           hint=f"The official file is {filename} from the segment-anything release. ")
    load_sam_weights(image_encoder, path, name)
    return SamEncoder(image_encoder, description=f"{human} image encoder (SA-1B, frozen; {Path(path).name})",
                      is_stand_in=False, layer_indices=layer_indices, resize=resize,
                      include_neck=include_neck)


@register_encoder("sam_vit_b")
def sam_vit_b(weights: str | os.PathLike | None = None, **kwargs: Any) -> SamEncoder:
    """SAM ViT-B image encoder (768 channels + 256-channel neck, stride 16)."""
    return _sam("sam_vit_b", weights, **kwargs)


@register_encoder("sam_vit_l")
def sam_vit_l(weights: str | os.PathLike | None = None, **kwargs: Any) -> SamEncoder:
    """SAM ViT-L image encoder (1024 channels + 256-channel neck, stride 16)."""
    return _sam("sam_vit_l", weights, **kwargs)


@register_encoder("sam_vit_h")
def sam_vit_h(weights: str | os.PathLike | None = None, **kwargs: Any) -> SamEncoder:
    """SAM ViT-H image encoder (1280 channels + 256-channel neck, stride 16)."""
    return _sam("sam_vit_h", weights, **kwargs)
