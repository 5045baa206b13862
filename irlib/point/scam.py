"""SCAM: Semantic-Conditioned Affine Modulation of a host's encoder features (Yao et al.).

What the released code (``models/teacher.py``) does, and what :class:`SCAM` implements::

    Fv = sum_k softmax(pi)_k F_k              # K frozen-VFM maps, pi learnable, init 0
    a  = softmax_positions(Conv1x1(Fv) / tau) # token-attention pooling (TAP), tau = 1
    g  = sum_positions a * Fv                 # one global vector per image
    m  = Linear(ReLU(Linear(g)))              # -> [gamma_hat_1, beta_1, gamma_hat_2, beta_2, ...]
    gamma_l = 1 + tanh(gate_l * gamma_hat_l)  # gate: per channel, init 1, L1-penalised
    f_l'    = (1 + s (gamma_l - 1)) f_l + s beta_l   # s = modulation scale of the host

applied channel-wise to every encoder stage output and to the bottleneck, after the whole
encoder has run and before the decoder (a modulated stage does not feed the next encoder stage).
``s = 0`` returns the features untouched (exact identity).

:class:`ScamTeacher` is the released ``DINOCNNTeacher``: the teacher is the host's own encoder,
SCAM, then the host's own decoder (weights shared, as FDEP's :class:`irlib.fdep.CoISD`); the
deployed student is the plain host (:meth:`ScamTeacher.export_student`).

Our choices where the paper and code are silent or cannot apply (all parameters):

* Encoders whose maps differ in width or grid (the CNN stand-ins) are first brought to one grid
  (``grid``: the coarsest, area-averaged with :func:`irlib.fdep.samf.align_to`) and one width
  (``fuse_dim``: the widest, by a learned 1x1 conv per map). Maps that already agree (any ViT)
  are fused as they are, as in the release.
* ``DEFAULT_SCALE = 0.12``: the release sets ``s`` per host (0.12 ALCL-Net, 0.55 MLCL-Net) and
  knows none of irlib's hosts; 0.12 is the smaller value and belongs to ALCL-Net, whose stride-16
  five-stage layout is the closest to irlib's hosts. A host attribute ``modulation_scale`` wins.
* BatchNorm running statistics: the teacher pass does not update them by default
  (``bn_stats="student"``), so the deployed host keeps its own; the release lets both passes
  update them (``bn_stats="both"``).
* The VFM maps are the encoder's ``feature_names`` (``vfm_layers``: all by default). The release
  takes all 13 DINOv3 hidden states with only the last LayerNorm-ed; irlib's ViTs give the chosen
  blocks, all normed.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from irlib.errors import IrlibInputError
from irlib.fdep.coisd import CoISD, frozen_batchnorm_stats
from irlib.fdep.samf import align_to
from irlib.models.base import HostFeatures, HostOutput, SirstHost
from irlib.vfm import FrozenEncoder

DEFAULT_SCALE = 0.12
GATE_L1_WEIGHT = 0.005  # the release's weight of gate_penalty() in the inner loss
HIDDEN_DIM = 128        # train.py's hidden_dim (the Modulator class default is 256)
GRIDS = ("coarsest", "finest")


def select_vfm_layers(encoder: FrozenEncoder, vfm_layers: Sequence[int] | None = None) -> list[int]:
    """Indices into ``encoder.feature_names`` of the maps SCAM fuses (default: all of them)."""
    names = encoder.feature_names
    if vfm_layers is None:
        return list(range(len(names)))
    chosen = [int(i) for i in vfm_layers]
    if not chosen or len(set(chosen)) != len(chosen) or not all(0 <= i < len(names) for i in chosen):
        raise IrlibInputError(f"vfm_layers={list(vfm_layers)} must name distinct feature maps of encoder "
                              f"{encoder.name or type(encoder).__name__} by index: {dict(enumerate(names))}")
    return chosen


class LayerFusion(nn.Module):
    """Softmax-weighted sum of K VFM maps (weights init equal), after optional width/grid alignment."""

    def __init__(self, channels: Sequence[int], fuse_dim: int | None = None, grid: str = "coarsest") -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if not channels or min(channels) < 1:
            raise IrlibInputError(f"LayerFusion needs at least one VFM map with >= 1 channel, got {channels}")
        if grid not in GRIDS:
            raise IrlibInputError(f"grid={grid!r}: use one of {GRIDS}")
        same = len(set(channels)) == 1
        self.dim = int(fuse_dim) if fuse_dim is not None else (channels[0] if same else max(channels))
        self.grid = grid
        self.channels = channels
        project = not (same and channels[0] == self.dim)
        self.proj = nn.ModuleList([nn.Conv2d(c, self.dim, 1) for c in channels]) if project else None
        self.logits = nn.Parameter(torch.zeros(len(channels)))
        if self.proj is not None:
            for conv in self.proj:
                nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
                nn.init.zeros_(conv.bias)

    @property
    def weights(self) -> Tensor:
        """The current softmax fusion weights, one per VFM map."""
        return torch.softmax(self.logits, dim=0)

    def forward(self, maps: Sequence[Tensor]) -> Tensor:
        if len(maps) != len(self.channels) or any(m.dim() != 4 for m in maps) \
                or [m.shape[1] for m in maps] != self.channels:
            got = [tuple(m.shape) for m in maps]
            raise IrlibInputError(f"SCAM expects {len(self.channels)} VFM maps (B, C, h, w) with C = "
                                  f"{self.channels}, got {got}; pass the maps of the encoder it was built for")
        pick = min if self.grid == "coarsest" else max
        size = (pick(m.shape[-2] for m in maps), pick(m.shape[-1] for m in maps))
        w = self.weights.to(maps[0].dtype)
        out = 0.0
        for i, m in enumerate(maps):
            m = align_to(m, size)
            if self.proj is not None:
                m = self.proj[i](m)
            out = out + w[i] * m
        return out


class TokenAttentionPool(nn.Module):
    """TAP: a 1x1 conv scores every position, softmax over positions (temperature tau), weighted sum."""

    def __init__(self, dim: int, temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise IrlibInputError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        # no bias: a constant added to every score cancels in the softmax (the release's bias never learns)
        self.score = nn.Conv2d(dim, 1, 1, bias=False)
        nn.init.kaiming_normal_(self.score.weight, nonlinearity="relu")  # the release: "Kaiming for convs"

    def forward(self, fv: Tensor) -> Tensor:
        attn = torch.softmax(self.score(fv).flatten(2) / self.temperature, dim=-1)  # (B, 1, N)
        return (fv.flatten(2) * attn).sum(dim=-1)                                  # (B, D)


class SCAM(nn.Module):
    """Condition feature maps with widths ``feature_channels`` on K frozen-VFM maps.

    Args:
        feature_channels: channels of each modulated feature, in order (host stages, bottleneck).
        vfm_channels: channels of each VFM map fed to :meth:`forward`.
        hidden_dim: width of the MLP's hidden layer (128 as in the released train.py).
        scale: modulation scale ``s`` >= 0; 0 leaves the features untouched. May be reassigned.
        temperature: TAP softmax temperature (1 in the release).
        fuse_dim, grid: alignment of VFM maps that differ in width or grid (see the module doc).
        gate_init: initial value of every per-channel gate (1 in the release).
    """

    def __init__(self, feature_channels: Sequence[int], vfm_channels: Sequence[int],
                 hidden_dim: int = HIDDEN_DIM, scale: float = DEFAULT_SCALE, temperature: float = 1.0,
                 fuse_dim: int | None = None, grid: str = "coarsest", gate_init: float = 1.0) -> None:
        super().__init__()
        self.feature_channels = [int(c) for c in feature_channels]
        if not self.feature_channels or min(self.feature_channels) < 1:
            raise IrlibInputError(f"feature_channels must be positive widths, got {list(feature_channels)}")
        if hidden_dim < 1:
            raise IrlibInputError(f"hidden_dim must be >= 1, got {hidden_dim}")
        self.scale = scale
        self.fusion = LayerFusion(vfm_channels, fuse_dim, grid)
        self.pool = TokenAttentionPool(self.fusion.dim, temperature)
        total = sum(self.feature_channels)
        self.mlp = nn.Sequential(nn.Linear(self.fusion.dim, hidden_dim), nn.ReLU(inplace=True),
                                 nn.Linear(hidden_dim, 2 * total))
        self.gate = nn.Parameter(torch.full((total,), float(gate_init)))

    @property
    def scale(self) -> float:
        """Modulation scale ``s`` (0: identity)."""
        return self._scale

    @scale.setter
    def scale(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise IrlibInputError(f"modulation scale must be a finite number >= 0, got {value!r}")
        self._scale = float(value)

    def condition(self, vfm: Sequence[Tensor]) -> Tensor:
        """The global conditioning vector ``g`` (B, D) of each image."""
        return self.pool(self.fusion(vfm))

    def affine(self, vfm: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per-feature ``gamma = 1 + tanh(gate * gamma_hat)`` and ``beta``, each (B, C, 1, 1)."""
        m = self.mlp(self.condition(vfm))
        gammas, betas, at, gate_at = [], [], 0, 0
        for c in self.feature_channels:
            g_hat, beta = m[:, at:at + c], m[:, at + c:at + 2 * c]
            at += 2 * c
            gate = self.gate[gate_at:gate_at + c]
            gate_at += c
            gammas.append((1.0 + torch.tanh(g_hat * gate))[..., None, None])
            betas.append(beta[..., None, None])
        return gammas, betas

    def modulate(self, feats: Sequence[Tensor], vfm: Sequence[Tensor]) -> list[Tensor]:
        """``(1 + s (gamma - 1)) f + s beta`` for every feature; the inputs themselves if ``s == 0``."""
        widths = [f.shape[1] if f.dim() == 4 else None for f in feats]
        if widths != self.feature_channels:
            raise IrlibInputError(f"SCAM was built for features with channels {self.feature_channels}, got "
                                  f"{[tuple(f.shape) for f in feats]}; build it with the host's channels")
        if self.scale == 0.0:
            return list(feats)
        if any(v.shape[0] != feats[0].shape[0] for v in vfm):
            raise IrlibInputError(f"VFM maps have batch sizes {[v.shape[0] for v in vfm]} but the features "
                                  f"{feats[0].shape[0]}; run the encoder on the same images")
        s = self.scale
        gammas, betas = self.affine(vfm)
        return [(1.0 + s * (g - 1.0)).to(f.dtype) * f + (s * b).to(f.dtype)
                for f, g, b in zip(feats, gammas, betas)]

    def forward(self, feats: Sequence[Tensor], vfm: Sequence[Tensor]) -> list[Tensor]:
        return self.modulate(feats, vfm)

    def gate_penalty(self) -> Tensor:
        """Mean |gate| over all channels; the release adds ``GATE_L1_WEIGHT`` times it to the inner loss."""
        return self.gate.abs().mean()

    def extra_repr(self) -> str:
        return f"feature_channels={self.feature_channels}, scale={self.scale}"


def host_scale(host: SirstHost, scale: float | None = None) -> float:
    """``scale`` if given, else the host's ``modulation_scale`` attribute, else :data:`DEFAULT_SCALE`
    (validated by :attr:`SCAM.scale`)."""
    return scale if scale is not None else getattr(host, "modulation_scale", DEFAULT_SCALE)


def _check_frozen(encoder: FrozenEncoder) -> None:
    if not getattr(encoder, "frozen", True):
        raise IrlibInputError(f"encoder {encoder.name or type(encoder).__name__} was unfrozen, but SCAM's VFM "
                              "stays frozen (Yao et al.); call encoder.freeze() first")


class ScamTeacher(nn.Module):
    """The teacher of Yao et al.: host encoder -> SCAM (frozen VFM) -> host decoder, host weights shared.

    Args:
        host: any :class:`irlib.models.SirstHost`; trained through both the teacher and the student.
        encoder: a frozen :class:`irlib.vfm.FrozenEncoder` (never trained, never exported); a
            stand-in is allowed and recorded (:attr:`is_stand_in`, :meth:`describe`).
        vfm_layers: which encoder maps SCAM fuses (indices into ``encoder.feature_names``; all by default).
        scale: modulation scale; ``None`` uses :func:`host_scale`.
        modulate_bottleneck: modulate ``feats.bottleneck`` too (default), not only ``feats.stages``.
        bn_stats: ``"student"`` (default): the teacher pass uses batch statistics but leaves the host's
            BatchNorm running statistics to the student pass; ``"both"``: the release's behaviour.
        scam_kwargs: passed to :class:`SCAM` (``hidden_dim``, ``temperature``, ``fuse_dim``, ``grid``,
            ``gate_init``).
    """

    def __init__(self, host: SirstHost, encoder: FrozenEncoder, vfm_layers: Sequence[int] | None = None,
                 scale: float | None = None, modulate_bottleneck: bool = True, bn_stats: str = "student",
                 **scam_kwargs: Any) -> None:
        super().__init__()
        if not isinstance(host, SirstHost):
            raise IrlibInputError(f"host must be an irlib.models.SirstHost, got {type(host).__name__}; "
                                  "build it with irlib.models.create_model")
        if not isinstance(encoder, FrozenEncoder):
            raise IrlibInputError(f"encoder must be an irlib.vfm.FrozenEncoder, got {type(encoder).__name__}; "
                                  "build it with irlib.vfm.create_encoder")
        _check_frozen(encoder)
        if bn_stats not in ("student", "both"):
            raise IrlibInputError(f"bn_stats must be 'student' or 'both', got {bn_stats!r}")
        self.host = host
        self.encoder = encoder
        self.vfm_layers = select_vfm_layers(encoder, vfm_layers)
        self.modulate_bottleneck = bool(modulate_bottleneck)
        self.bn_stats = bn_stats
        channels = list(host.stage_channels) + ([host.bottleneck_channels] if modulate_bottleneck else [])
        self.scam = SCAM(channels, [encoder.feature_channels[i] for i in self.vfm_layers],
                         scale=host_scale(host, scale), **scam_kwargs)

    @property
    def is_stand_in(self) -> bool:
        """Whether the VFM is a stand-in (not a foundation model); results must say so."""
        return bool(self.encoder.is_stand_in)

    def describe(self) -> dict[str, Any]:
        """Plain values to record with results: the encoder, its maps, stand-in flag, scale, channels."""
        return {"encoder": self.encoder.name or type(self.encoder).__name__,
                "encoder_description": self.encoder.description,
                "encoder_is_stand_in": self.is_stand_in,
                "vfm_layers": [self.encoder.feature_names[i] for i in self.vfm_layers],
                "modulation_scale": self.scam.scale, "modulate_bottleneck": self.modulate_bottleneck,
                "modulated_channels": list(self.scam.feature_channels), "bn_stats": self.bn_stats}

    def vfm_features(self, raw: Tensor) -> list[Tensor]:
        """The frozen encoder's maps that feed SCAM, for raw [0, 1] images (no gradients)."""
        _check_frozen(self.encoder)
        with torch.no_grad():
            features = self.encoder(raw).features
        return [features[i] for i in self.vfm_layers]

    def modulate(self, feats: HostFeatures, vfm: Sequence[Tensor]) -> HostFeatures:
        """SCAM applied to the stages (and the bottleneck); ``feats`` itself is not changed."""
        n = len(feats.stages)
        out = self.scam(list(feats.stages) + ([feats.bottleneck] if self.modulate_bottleneck else []), vfm)
        return replace(feats, stages=out[:n], bottleneck=out[n] if self.modulate_bottleneck else feats.bottleneck)

    def forward(self, raw: Tensor, x: Tensor, vfm: Sequence[Tensor] | None = None) -> HostOutput:
        """Teacher logits for raw [0, 1] images (the VFM's input) and their host-normalised copy ``x``.

        ``vfm``: the SCAM input maps already at hand; by default the encoder runs on ``raw``.
        """
        vfm = self.vfm_features(raw) if vfm is None else list(vfm)
        if self.bn_stats == "student":
            with frozen_batchnorm_stats(self.host):
                return self.host.decode(self.modulate(self.host.encode(x), vfm), x.shape[-2:])
        return self.host.decode(self.modulate(self.host.encode(x), vfm), x.shape[-2:])

    def student(self, x: Tensor) -> HostOutput:
        """The deployed network's logits: the plain host on normalised input."""
        return self.host(x)

    def gate_penalty(self) -> Tensor:
        """SCAM's gate L1 term (mean |gate|); weight it with :data:`GATE_L1_WEIGHT` as the release does."""
        return self.scam.gate_penalty()

    def export_student(self) -> SirstHost:
        """The deployed model: a copy of the host in eval mode, no SCAM, no VFM (FDEP's export)."""
        return CoISD.export_host(self)  # type: ignore[arg-type]  # reads only ``self.host``
