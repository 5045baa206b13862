"""SimIR's probing model: any irlib encoder under segment-anything's mask decoder, without prompts.

``ProbeSegmenter(encoder, mode)`` maps one of the encoder's feature maps through a 1x1 conv and
LayerNorm to 256 channels and decodes it with SAM's own :class:`MaskDecoder` (two-way transformer,
random-Fourier position embedding). Prompt-free as in SimIR's SIRST path: no sparse prompts, and
the dense prompt is a learned "no mask" embedding, as SAM's ``PromptEncoder`` adds when no mask is
given; one mask token, no multimask. ``mode="frozen"`` trains the neck and decoder only,
``"finetune"`` the encoder too (:meth:`irlib.vfm.FrozenEncoder.unfreeze`).

Inputs follow FDEP's convention (:mod:`irlib.fdep.objective`): the training step,
:class:`ProbeObjective`, gives the encoder the raw [0, 1] crops; the engine's evaluation feeds
``normalize(raw)``, which :meth:`ProbeSegmenter.forward` maps back to raw with the same
:class:`~irlib.engine.Normalize` (the engine's zero padding thus becomes the dataset mean).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder, TwoWayTransformer
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.prompt_encoder import PositionEmbeddingRandom
from torch import nn

from irlib.engine.losses import build_loss
from irlib.engine.normalize import Normalize
from irlib.errors import IrlibInputError
from irlib.vfm import FrozenEncoder

MODES = ("frozen", "finetune")
#: The default feature map is the deepest one whose stride is at most this (SAM's embedding stride).
MAX_STRIDE = 16


def default_feature_index(encoder: FrozenEncoder) -> int:
    """The deepest feature map with stride <= 16 (SAM's neck, DINOv2's last block, a CNN's
    stride-16 stage); the finest map when every stride is coarser."""
    fine = [i for i, s in enumerate(encoder.strides) if s <= MAX_STRIDE]
    return fine[-1] if fine else min(range(len(encoder.strides)), key=lambda i: encoder.strides[i])


class ProbeSegmenter(nn.Module):
    """A prompt-free SAM mask decoder on one feature map of any irlib encoder.

    Args:
        encoder: from :func:`irlib.vfm.create_encoder`; unfrozen in ``"finetune"`` mode, (re)frozen
            in ``"frozen"`` mode.
        mode: ``"frozen"`` or ``"finetune"``.
        normalize: the engine's input normalisation, needed by :meth:`forward` (normalised input);
            :meth:`forward_raw` works without it.
        feature_index: which of ``encoder.feature_names`` feeds the decoder (default:
            :func:`default_feature_index`).
        dim, depth, heads, mlp_dim: the decoder's width and two-way transformer (SAM's values).
    """

    def __init__(self, encoder: FrozenEncoder, mode: str = "frozen", normalize: Normalize | None = None,
                 feature_index: int | None = None, dim: int = 256, depth: int = 2, heads: int = 8,
                 mlp_dim: int = 2048) -> None:
        super().__init__()
        if mode not in MODES:
            raise IrlibInputError(f"mode={mode!r}: use one of {MODES}")
        if not isinstance(encoder, FrozenEncoder):
            raise IrlibInputError(f"encoder must come from irlib.vfm.create_encoder, got {type(encoder).__name__}")
        names = encoder.feature_names
        index = default_feature_index(encoder) if feature_index is None else int(feature_index)
        if not -len(names) <= index < len(names):
            raise IrlibInputError(f"feature_index={index} is out of range; the encoder's feature maps are "
                                  f"{dict(enumerate(names))}")
        self.mode = mode
        self.feature_index = index % len(names)
        self.encoder = encoder.unfreeze() if mode == "finetune" else encoder.freeze()
        self.neck = nn.Sequential(nn.Conv2d(encoder.feature_channels[self.feature_index], dim, 1, bias=False),
                                  LayerNorm2d(dim))
        self.pe_layer = PositionEmbeddingRandom(dim // 2)
        self.no_mask_embed = nn.Embedding(1, dim)
        self.decoder = MaskDecoder(transformer_dim=dim, num_multimask_outputs=0,
                                   transformer=TwoWayTransformer(depth=depth, embedding_dim=dim,
                                                                 num_heads=heads, mlp_dim=mlp_dim))
        self.decoder.iou_prediction_head.requires_grad_(False)  # no IoU target here: kept, not trained
        self.register_buffer("input_mean", torch.zeros(0), persistent=False)
        self.register_buffer("input_std", torch.zeros(0), persistent=False)
        if normalize is not None:
            self.set_normalize(normalize)

    @property
    def is_stand_in(self) -> bool:
        """Whether the encoder is a stand-in rather than a foundation model."""
        return bool(self.encoder.is_stand_in)

    @property
    def feature_name(self) -> str:
        """The encoder feature map the decoder reads, e.g. ``"neck"`` or ``"stage 3"``."""
        return self.encoder.feature_names[self.feature_index]

    def set_normalize(self, normalize: Normalize) -> None:
        """Remember the engine's input normalisation, so :meth:`forward` can recover raw images."""
        self.input_mean = normalize.mean.reshape(1, -1, 1, 1).clone()
        self.input_std = normalize.std.reshape(1, -1, 1, 1).clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 1, H, W)`` for engine input ``x = normalize(raw)`` of any size."""
        if self.input_mean.numel() == 0:
            raise IrlibInputError("ProbeSegmenter got normalised input but knows no normalisation: pass "
                                  "normalize=data.normalize (or call set_normalize), or call forward_raw(raw)")
        return self.forward_raw(x * self.input_std.to(x) + self.input_mean.to(x))

    def forward_raw(self, raw: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 1, H, W)`` for raw ``(B, 1 or 3, H, W)`` images in [0, 1] of any size."""
        enc = self.encoder  # preprocess + encode rather than enc(raw): the valid size crops the logits back
        with torch.set_grad_enabled(torch.is_grad_enabled() and not enc.frozen):
            x, valid = enc.preprocess(raw)  # raises IrlibInputError on bad shapes or dtypes
            features, _ = enc.encode(x, valid)
        emb = self.neck(features[self.feature_index])
        h, w = emb.shape[-2:]
        pe = self.pe_layer((h, w)).unsqueeze(0).to(emb.dtype)
        dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, h, w)
        sparse = emb.new_zeros((1, 0, emb.shape[1]))
        # one image at a time: SAM's decoder repeats each image embedding once per prompt set
        masks = torch.cat([self.decoder(image_embeddings=e[None], image_pe=pe, sparse_prompt_embeddings=sparse,
                                        dense_prompt_embeddings=dense, multimask_output=False)[0]
                           for e in emb])
        return self.to_input_size(masks, (h, w), valid, tuple(raw.shape[-2:]))

    def to_input_size(self, masks: torch.Tensor, grid: tuple[int, int], valid: tuple[int, int],
                      size: tuple[int, int]) -> torch.Tensor:
        """Decoder masks -> logits on the input grid, as SAM's ``postprocess_masks``: upsample to the
        pixels the ``grid`` of feature cells covers, crop the encoder's padding (``valid`` is the
        image inside its input), undo its resizing to ``size``."""
        stride = self.encoder.strides[self.feature_index]
        out = F.interpolate(masks, size=(grid[0] * stride, grid[1] * stride), mode="bilinear", align_corners=False)
        out = out[..., : valid[0], : valid[1]]
        if tuple(out.shape[-2:]) != tuple(size):
            out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
        return out

    def extra_repr(self) -> str:
        return (f"mode={self.mode!r}, feature={self.feature_name!r} (index {self.feature_index}), "
                f"stand_in={self.is_stand_in}")


class ProbeObjective:
    """One training step of a probe: ``loss_fn(model.forward_raw(raw), mask)``.

    As in FDEP's :class:`~irlib.fdep.objective.CoISDObjective`, the objective hands the encoder the
    raw [0, 1] crops of the batch; the engine's normalisation is only for evaluation
    (:meth:`ProbeSegmenter.forward`). ``loss_fn``: a loss name or callable (e.g.
    :func:`irlib.engine.recipe_loss`, which handles warm-up losses); batch ``"weight"`` is honoured.
    """

    def __init__(self, loss_fn: str | Callable[[Any, torch.Tensor], torch.Tensor]) -> None:
        self.loss_fn = build_loss(loss_fn) if isinstance(loss_fn, str) else loss_fn

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.loss_fn, "set_epoch"):
            self.loss_fn.set_epoch(epoch)

    def __call__(self, model: ProbeSegmenter, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        out = model.forward_raw(batch["image"])
        if "weight" in batch:
            loss = self.loss_fn.weighted(out, batch["mask"], batch["weight"])
        else:
            loss = self.loss_fn(out, batch["mask"])
        return loss, {"loss": float(loss.detach())}


__all__ = ["MODES", "ProbeObjective", "ProbeSegmenter", "default_feature_index"]
