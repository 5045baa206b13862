"""SimIR student: shapes at any size, deformable attention against a slow reference, gradients,
segment-anything's decoder, the loss, determinism and the engine."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from segment_anything.modeling import TwoWayTransformer

from irlib.engine import build_loss
from irlib.errors import IrlibInputError
from irlib.models import create_model, load_host, save_host
from irlib.simir.deform_attn import MSDeformAttn, ms_deform_attn
from irlib.simir.layers import sine_positions
from irlib.simir.loss import SimIRLoss, dice_per_image
from irlib.simir.student import SimIRStudent, load_repvit_weights

# a small student for fast tests: RepViT-M0.9 body, 32-d queries; every mechanism of the released one
SMALL = dict(arch="repvit_m0_9", dim=32, ffn_dim=64, decoder_mlp_dim=64, dense_ffn_dim=32)


def small(**kw) -> SimIRStudent:
    torch.manual_seed(0)
    return SimIRStudent(**{**SMALL, **kw})


@pytest.mark.parametrize("stem_stride", [1, 4])
@pytest.mark.parametrize("size", [(32, 32), (40, 56), (72, 24)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_output_shapes_any_size(stem_stride: int, size: tuple[int, int]) -> None:
    model = small(stem_stride=stem_stride).train()
    outs = model(torch.randn(2, 1, *size))
    assert isinstance(outs, list) and len(outs) == 3
    assert all(o.shape == (2, 1, *size) for o in outs)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, *size)).shape == (1, 1, *size)


def test_released_configuration_size_and_strides() -> None:
    model = create_model("simir")
    n = sum(p.numel() for p in model.parameters())
    assert 24.0e6 < n < 26.0e6                       # ~24.9 M (analytic count in simir.md)
    assert model.encoder.stem_stride == 1 and model.pad_multiple == 8
    assert model.encoder.widths == [64, 128, 256, 512]
    assert create_model("simir_s4").pad_multiple == 32
    feats = model.encoder(torch.randn(1, 1, 32, 32)).features
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4] and all(f.shape[1] == 256 for f in feats)


def _slow_deform_attn(value, shapes, loc, weights):
    """Reference: bilinear interpolation written out point by point (zero outside the map)."""
    b, _, heads, c = value.shape
    _, q, _, levels, points, _ = loc.shape
    out = torch.zeros(b, q, heads, c, dtype=value.dtype)
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    for bi in range(b):
        for qi in range(q):
            for hd in range(heads):
                for lv, (h, w) in enumerate(shapes):
                    v = value[bi, starts[lv]:starts[lv + 1], hd].reshape(h, w, c)
                    for pt in range(points):
                        x = float(loc[bi, qi, hd, lv, pt, 0]) * w - 0.5
                        y = float(loc[bi, qi, hd, lv, pt, 1]) * h - 0.5
                        x0, y0 = int(torch.floor(torch.tensor(x))), int(torch.floor(torch.tensor(y)))
                        acc = torch.zeros(c, dtype=value.dtype)
                        for yy, xx in [(y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)]:
                            wt = (1 - abs(x - xx)) * (1 - abs(y - yy))
                            if 0 <= yy < h and 0 <= xx < w:
                                acc = acc + wt * v[yy, xx]
                        out[bi, qi, hd] += weights[bi, qi, hd, lv, pt] * acc
    return out.reshape(b, q, heads * c)


def test_deformable_attention_matches_slow_reference() -> None:
    g = torch.Generator().manual_seed(0)
    shapes = [(5, 7), (2, 3)]
    value = torch.randn(2, 35 + 6, 2, 3, generator=g, dtype=torch.float64)
    loc = torch.rand(2, 4, 2, 2, 3, 2, generator=g, dtype=torch.float64) * 1.2 - 0.1   # some outside
    weights = torch.rand(2, 4, 2, 2, 3, generator=g, dtype=torch.float64)
    fast = ms_deform_attn(value, shapes, loc, weights)
    assert torch.allclose(fast, _slow_deform_attn(value, shapes, loc, weights), atol=1e-10)
    with pytest.raises(IrlibInputError, match="tokens"):
        ms_deform_attn(value[:, :-1], shapes, loc, weights)


def test_deformable_module_starts_at_the_mean_of_its_offsets() -> None:
    attn = MSDeformAttn(dim=8, levels=1, heads=8, points=4)
    assert attn.sampling_offsets.bias.view(8, 1, 4, 2)[0, 0, :, 0].tolist() == [1.0, 2.0, 3.0, 4.0]
    out = attn(torch.randn(1, 6, 8), torch.full((1, 6, 1, 2), 0.5), torch.randn(1, 12, 8), [(3, 4)])
    assert out.shape == (1, 6, 8)


def test_sine_positions_match_detr_layout() -> None:
    pe = sine_positions(torch.zeros(1, 3, 4, 6), 8)
    assert pe.shape == (1, 8, 4, 6)
    # channel 0 is sin of the normalised row: rows differ, columns do not
    assert torch.allclose(pe[0, 0, :, 0], pe[0, 0, :, 5]) and not torch.allclose(pe[0, 0, 0], pe[0, 0, 3])
    assert torch.allclose(pe[0, 4, 0, :], pe[0, 4, 3, :])   # channel 4: sin of the column


@pytest.mark.parametrize("queries", ["sparse_dense", "sparse", "none"])
def test_gradients_reach_every_parameter(queries: str) -> None:
    model = small(queries=queries).train()
    outs = model(torch.randn(2, 1, 32, 40))
    assert len(outs) == (3 if queries == "sparse_dense" else 2)
    SimIRLoss()(outs, (torch.rand(2, 1, 32, 40) > 0.95).float()).backward()
    # RepViT zero-initialises the last BN of each residual MLP, so some body gradients start at 0;
    # every query, FPN and decoder parameter must get a non-zero gradient
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    # and Deformable DETR zero-initialises the offset/weight projections, which are all that
    # reads the deformable encoders' level embeddings
    zero = [n for n, p in model.named_parameters() if not n.startswith("encoder.body.")
            and not n.endswith("level_embed") and not p.grad.abs().sum() > 0]
    assert not missing and not zero, f"parameters without gradient: {(missing + zero)[:6]}"
    names = {n for n, _ in model.named_parameters()}
    if queries != "none":
        assert {"encoder.query_feat.weight", "fpn.query_feat.weight", "decoder.output_token.weight"} <= names


def test_decoder_uses_segment_anything_two_way_transformer() -> None:
    model = small(decoder_depth=3)
    assert type(model.decoder.transformer) is TwoWayTransformer
    assert len(model.decoder.transformer.layers) == 3
    # the random Fourier matrix is part of the state dict (saved with the weights)
    assert "decoder.pe.positional_encoding_gaussian_matrix" in model.state_dict()


def test_encode_decode_contract_and_replace_keeps_queries() -> None:
    import dataclasses
    model = small().eval()
    x = torch.randn(1, 1, 40, 24)
    with torch.no_grad():
        feats = model.encode(x)
        assert feats.bottleneck.shape == (1, 32, 5, 3) and feats.queries.shape == (1, 4, 32)
        same = model.decode(dataclasses.replace(feats, bottleneck=feats.bottleneck.clone()), x.shape[-2:])
        assert torch.equal(same, model(x))


def test_same_seed_same_model_and_output_and_save_load(tmp_path) -> None:
    a, b = small(), small()
    x = torch.randn(1, 1, 32, 32)
    a.eval(), b.eval()
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    path = tmp_path / "simir.pt"
    save_host(create_model("simir_tiny", dim=32, ffn_dim=64), path)
    loaded = load_host(path).eval()
    assert loaded.encoder.dim == 32


def test_timm_repvit_weights_load_into_the_body() -> None:
    import timm
    torch.manual_seed(1)
    ref = timm.create_model("repvit_m0_9", pretrained=False)    # 3-channel ImageNet layout
    model = small()
    missing = load_repvit_weights(model, ref.state_dict())
    assert missing == []
    w = ref.state_dict()["stem.conv1.c.weight"].sum(1, keepdim=True)
    assert torch.allclose(model.encoder.body.stem.conv1.c.weight, w)
    with pytest.raises(IrlibInputError, match="keys"):
        load_repvit_weights(model, {"not.a.key": torch.zeros(1)})


def test_simir_loss_is_bce_plus_dice_times_five_summed_over_stages() -> None:
    torch.manual_seed(0)
    t = (torch.rand(2, 1, 16, 16) > 0.9).float()
    p = [torch.randn(2, 1, 16, 16) for _ in range(3)]
    expected = sum(5 * F.binary_cross_entropy_with_logits(q, t) + 5 * dice_per_image(q, t).mean() for q in p)
    assert torch.allclose(SimIRLoss()(p, t), expected)
    assert isinstance(build_loss("simir"), SimIRLoss)
    # point-sampled variant: finite, differentiable, close to the dense one on a smooth problem
    q = torch.zeros(2, 1, 16, 16, requires_grad=True)
    sampled = SimIRLoss(points=200, dice_weight=0.0)(q, torch.zeros(2, 1, 16, 16))
    sampled.backward()
    assert torch.isfinite(sampled) and q.grad is not None and q.grad.abs().sum() > 0
    assert torch.allclose(sampled, torch.tensor(5 * 0.6931472), atol=1e-5)   # 5 BCE(0, 0) = 5 log 2


def test_scale_jitter_crops_keep_size_binary_masks_and_mean_padding() -> None:
    import numpy as np
    from irlib.data.transforms import JointAugment, rescale
    img = np.full((60, 80), 0.3, np.float32)
    mask = np.zeros((60, 80), bool)
    mask[20:30, 30:50] = True
    aug = JointAugment(64, image_pad=0.7, scale_range=(0.5, 0.5), hflip=False, vflip=False, transpose=False)
    out_img, out_mask = aug(np.random.default_rng(0), img, mask)
    assert out_img.shape == out_mask.shape == (64, 64) and out_mask.dtype == bool
    # s = 0.5: the image fits in 32 px (80 -> 32, 60 -> 24); the rest of the crop is mean padding
    assert np.isclose(out_img, 0.7).sum() == 64 * 64 - 32 * 24
    assert out_mask.sum() == 4 * 8                       # 10 x 20 target -> 4 x 8 at factor 0.4
    a = JointAugment(64, scale_range=(0.1, 2.0))
    draws = [a(np.random.default_rng(3), img, mask) for _ in range(2)]
    assert np.array_equal(draws[0][0], draws[1][0])      # deterministic given the generator
    assert rescale([img, mask], 2.0)[1].sum() == 4 * mask.sum()
    with pytest.raises(IrlibInputError, match="scale_range"):
        JointAugment(64, scale_range=(0.0, 1.0))


def test_simir_recipe_is_the_released_schedule() -> None:
    from irlib.engine import get_recipe
    r = get_recipe("simir")
    assert (r.optimizer, r.lr, r.weight_decay, r.grad_clip, r.batch_size, r.loss) == ("adamw", 1e-4, 0.1, 0.01, 8, "simir")
    assert r.no_decay_norm_bias and r.scale_range == (0.1, 2.0) and r.min_lr == 1e-6
    assert type(r).from_dict(r.to_dict()) == r
