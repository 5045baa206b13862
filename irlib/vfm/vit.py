"""DINOv2 ViT-S/14 and ViT-B/14 through timm, and a tiny random ViT for tests.

Weights are read from a local file, never downloaded. Two key formats are accepted:

* the official facebookresearch release (``dinov2_vits14_pretrain.pth``,
  ``dinov2_vitb14_pretrain.pth``): keys ``cls_token, pos_embed, mask_token, patch_embed.*,
  blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}.*, norm.*``;
* timm's format (``model.safetensors`` / ``pytorch_model.bin`` of
  ``timm/vit_small_patch14_dinov2.lvd142m``): the same keys without ``mask_token``.

Both go through timm's own ``checkpoint_filter_fn`` (which drops ``mask_token`` and resamples
``pos_embed`` if its grid differs) and are then loaded strictly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

from irlib.errors import IrlibInputError
from irlib.vfm.base import FrozenEncoder, check_indices, crop_to, evenly_spaced_blocks
from irlib.vfm.preprocess import IMAGENET_MEAN, IMAGENET_STD, Resize
from irlib.vfm.registry import register_encoder
from irlib.vfm.util import seeded
from irlib.vfm.weights import (
    RANDOM,
    hf_snapshot_files,
    load_state_dict,
    load_strict,
    resolve_weights,
    torch_hub_checkpoints,
)

_DINOV2 = {
    # registry name: (timm model, official file, timm hub repo, human name)
    "dinov2_vits14": ("vit_small_patch14_dinov2", "dinov2_vits14_pretrain.pth",
                      "timm/vit_small_patch14_dinov2.lvd142m", "DINOv2 ViT-S/14"),
    "dinov2_vitb14": ("vit_base_patch14_dinov2", "dinov2_vitb14_pretrain.pth",
                      "timm/vit_base_patch14_dinov2.lvd142m", "DINOv2 ViT-B/14"),
}
_FORMATS = ("the official DINOv2 release (dinov2_vit*14_pretrain.pth, keys cls_token, pos_embed, "
            "mask_token, blocks.N.*, norm.*) or timm's vit_*_patch14_dinov2 state dict")


class ViTEncoder(FrozenEncoder):
    """A timm VisionTransformer as a frozen encoder.

    Features are the patch tokens after the blocks in ``layer_indices`` (passed through the final
    LayerNorm when ``norm``, as DINOv2's ``get_intermediate_layers(norm=True)``), as
    ``(B, embed_dim, H/14, W/14)`` maps; the global vector is the final normalised CLS token.
    Default resize policy ``"pad"`` keeps the native resolution (zero-pad to a multiple of 14).
    """

    feature_unit = "block"

    def __init__(self, vit: VisionTransformer, *, description: str, is_stand_in: bool,
                 layer_indices: list[int] | None = None, resize: Resize = "pad", norm: bool = True,
                 mean: tuple[float, float, float] = IMAGENET_MEAN,
                 std: tuple[float, float, float] = IMAGENET_STD) -> None:
        patch = vit.patch_embed.patch_size[0]
        super().__init__(mean, std, resize, multiple=patch)
        self.vit = vit
        depth = len(vit.blocks)
        chosen = evenly_spaced_blocks(depth) if layer_indices is None else layer_indices
        self.layer_indices = check_indices(chosen, depth, "blocks")
        self.feature_channels = [vit.embed_dim] * len(self.layer_indices)
        self.strides = [patch] * len(self.layer_indices)
        self.global_dim = vit.embed_dim
        self.norm = norm
        self.description = description
        self.is_stand_in = is_stand_in
        self.freeze()

    def encode(self, x: torch.Tensor, valid_hw: tuple[int, int]) -> tuple[list[torch.Tensor], torch.Tensor]:
        final, inter = self.vit.forward_intermediates(x, indices=self.layer_indices, norm=self.norm,
                                                      output_fmt="NCHW")
        return [crop_to(f, valid_hw, s) for f, s in zip(inter, self.strides)], final[:, 0]


def load_vit_weights(vit: VisionTransformer, path: str | os.PathLike, encoder: str) -> None:
    """Load an official-DINOv2 or timm-format checkpoint into ``vit`` (strict, clear errors)."""
    state = load_state_dict(path, encoder)
    if "cls_token" not in state or "patch_embed.proj.weight" not in state:
        load_strict(vit, state, path, encoder, _FORMATS)  # raises with the key lists
    try:
        state = checkpoint_filter_fn(dict(state), vit)
    except Exception as exc:  # noqa: BLE001
        raise IrlibInputError(f"{encoder}: cannot convert {str(path)!r}; expected {_FORMATS} "
                              f"({type(exc).__name__}: {exc})") from exc
    load_strict(vit, state, path, encoder, _FORMATS)


def _dinov2(name: str, weights: str | os.PathLike | None, layer_indices: list[int] | None = None,
            resize: Resize = "pad", norm: bool = True, seed: int = 0, **arch: Any) -> ViTEncoder:
    """Build a DINOv2 encoder; ``arch`` (embed_dim, depth, num_heads, ...) overrides timm's sizes."""
    timm_name, filename, hub_repo, human = _DINOV2[name]
    with seeded(seed):
        vit = timm.create_model(timm_name, pretrained=False, num_classes=0, dynamic_img_size=True, **arch)
    if weights == RANDOM:
        description = f"{human} architecture with random weights (stand-in, not a foundation model)"
        return ViTEncoder(vit, description=description, is_stand_in=True,
                          layer_indices=layer_indices, resize=resize, norm=norm)
    extra = [torch_hub_checkpoints() / filename] + hf_snapshot_files(hub_repo, ["model.safetensors",
                                                                               "pytorch_model.bin"])
    path = resolve_weights(name, weights, [filename], extra,
                           hint=f"The official file is {filename} from the DINOv2 release; timm's "
                                f"{hub_repo} model.safetensors also works. ")
    load_vit_weights(vit, path, name)
    return ViTEncoder(vit, description=f"{human} (LVD-142M self-supervised, frozen; {Path(path).name})",
                      is_stand_in=False, layer_indices=layer_indices, resize=resize, norm=norm)


@register_encoder("dinov2_vits14")
def dinov2_vits14(weights: str | os.PathLike | None = None, **kwargs: Any) -> ViTEncoder:
    """DINOv2 ViT-S/14 (384 channels, 12 blocks, default features from blocks [2, 5, 8, 11])."""
    return _dinov2("dinov2_vits14", weights, **kwargs)


@register_encoder("dinov2_vitb14")
def dinov2_vitb14(weights: str | os.PathLike | None = None, **kwargs: Any) -> ViTEncoder:
    """DINOv2 ViT-B/14 (768 channels, 12 blocks, default features from blocks [2, 5, 8, 11])."""
    return _dinov2("dinov2_vitb14", weights, **kwargs)


@register_encoder("tiny_vit_random")
def tiny_vit_random(weights: str | os.PathLike | None = None, seed: int = 0, embed_dim: int = 32,
                    depth: int = 4, num_heads: int = 2, patch_size: int = 8, **kwargs: Any) -> ViTEncoder:
    """A DINOv2-style ViT (layer scale, CLS token) with seeded random weights, for tests."""
    with seeded(seed):
        vit = VisionTransformer(img_size=64, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
                                num_heads=num_heads, init_values=1e-5, num_classes=0,
                                dynamic_img_size=True)
    return ViTEncoder(vit, description=f"tiny random ViT (patch {patch_size}, dim {embed_dim}, "
                                       f"seed {seed}; tests and smoke runs only)",
                      is_stand_in=True, **kwargs)
