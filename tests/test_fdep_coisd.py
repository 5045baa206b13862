"""FDEP fixes: shared deep-supervision outputs counted once, area shrink of VFM maps, identity start.

New names are imported inside the tests so that each test fails on its own on older code.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from irlib.engine import Normalize
from irlib.fdep import SAMF, CoISD, CoISDObjective
from irlib.fdep.samf import align_to
from irlib.models import create_model
from irlib.vfm import create_encoder

SIZE = 64


def _coisd(host_name: str, seed: int = 0, **kwargs) -> CoISD:
    torch.manual_seed(seed)
    return CoISD(create_model(host_name), create_encoder("tiny_cnn_random", seed=seed), **kwargs).train()


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    raw = torch.rand(2, 1, SIZE, SIZE, generator=g)
    return {"image": raw, "mask": (torch.rand(2, 1, SIZE, SIZE, generator=g) > 0.97).float()}


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.detach().flatten(), b.detach().flatten(), dim=0))


# ------------------------------------------------------------- 1. shared outputs counted once
def test_dnanet_side_outputs_are_left_out_of_the_main_branch() -> None:
    model = _coisd("dnanet")
    x = _batch()["image"]
    main, light = model.forward_branches(x, x)
    assert isinstance(light, list) and len(light) == 4
    assert isinstance(main, list) and len(main) == 1, "only the final map depends on the bottleneck"
    assert not torch.equal(main[0], light[0])


def test_dnanet_dropped_outputs_are_exactly_the_light_ones() -> None:
    model = _coisd("dnanet")
    x = _batch()["image"]
    main, light = model.forward_branches(x, x, shared_once=False)
    assert len(main) == 4
    assert not torch.equal(main[0], light[0])
    assert all(torch.equal(m, l) for m, l in zip(main[1:], light[1:]))


def test_dnanet_objective_counts_side_losses_once() -> None:
    model = _coisd("dnanet")
    objective = CoISDObjective("softiou", lam=0.5, normalize=Normalize(0.5, 0.25))
    batch = _batch()
    torch.manual_seed(1)
    loss, logs = objective(model, batch)
    torch.manual_seed(1)
    main, light = model.forward_branches(batch["image"], objective.normalize(batch["image"]), shared_once=False)
    expected = objective.loss_fn(main[0], batch["mask"]) + 0.5 * objective.loss_fn(light, batch["mask"])
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    assert logs["main"] == pytest.approx(float(objective.loss_fn(main[0], batch["mask"]).detach()), rel=1e-6)


def test_hosts_whose_outputs_all_depend_on_the_bottleneck_keep_them_all() -> None:
    model = _coisd("mshnet")
    x = _batch()["image"]
    main, light = model.forward_branches(x, x)
    assert len(main) == len(light) == 5
    acm = _coisd("acm")
    main, _ = acm.forward_branches(x, x)
    assert isinstance(main, torch.Tensor)


def test_depends_on_reads_the_graph_and_falls_back_without_one() -> None:
    from irlib.fdep.coisd import depends_on

    a = torch.randn(3, requires_grad=True)
    src = a * 2
    other = torch.randn(3, requires_grad=True) + 1
    outs = [src.sum() + other.sum(), other * 3, (src.exp() * other).mean()]
    assert depends_on(outs, src) == [True, False, True]
    with torch.no_grad():
        src2 = a * 2
    assert depends_on([other], src2) == [True]  # no graph: every output counts


def test_host_whose_output_ignores_the_bottleneck_is_refused() -> None:
    model = _coisd("dnanet")
    x = _batch()["image"]
    model.host.decode = lambda feats, size: [feats.stages[0][:, :1] * 1.0]
    with pytest.raises(ValueError, match="depends on its bottleneck"):
        model.forward_branches(x, x)


# ------------------------------------------------------------- 2. VFM map shrink keeps small targets
SHRINKS = [(2, 8), (3, 8), (4, 8), (5, 4), (6, 4), (7, 4), (8, 4), (16, 2),  # (factor, target side)
           ]


def _hot_cells(h: int, w: int) -> torch.Tensor:
    """(1, h*w, h, w): channel k is one hot cell at row k // w, column k % w."""
    return torch.eye(h * w).reshape(1, h * w, h, w)


@pytest.mark.parametrize("factor,side", SHRINKS)
def test_single_hot_cell_survives_every_integer_shrink(factor: int, side: int) -> None:
    n = factor * side
    out = align_to(_hot_cells(n, n), (side, side))
    assert out.shape == (1, n * n, side, side)
    rows, cols = torch.arange(n * n) // n, torch.arange(n * n) % n
    at = out[0, torch.arange(n * n), rows // factor, cols // factor]
    assert bool((at > 0).all()), f"{int((at <= 0).sum())} of {n * n} hot cells vanished"
    assert torch.allclose(out.sum(dim=(-2, -1)), torch.full((n * n,), 1.0 / factor ** 2))


@pytest.mark.parametrize("src,dst", [((18, 18), (16, 16)), ((37, 23), (8, 5)), ((24, 24), (16, 16)),
                                     ((32, 6), (8, 12))])
def test_single_hot_cell_survives_non_integer_and_mixed_resizes(src: tuple[int, int],
                                                                dst: tuple[int, int]) -> None:
    h, w = src
    out = align_to(_hot_cells(h, w), dst)
    assert out.shape[-2:] == dst
    k = torch.arange(h * w)
    rows, cols = (k // w) * dst[0] // h, (k % w) * dst[1] // w
    if dst[1] > w:  # this side grows: the cell's response lands near its scaled position
        cols = ((k % w).float() + 0.5).mul(dst[1] / w).floor().long()
    assert bool((out[0, k, rows, cols] > 0).all())


def test_enlarging_is_still_plain_bilinear() -> None:
    d = torch.randn(2, 5, 7, 9)
    for size in [(14, 18), (16, 16), (7, 12)]:
        expected = F.interpolate(d, size=size, mode="bilinear", align_corners=False)
        assert torch.equal(align_to(d, size), expected)
    assert align_to(d, (7, 9)) is d


# ------------------------------------------------------------- 3. identity start of the SAMF chain
def test_samf_identity_init_starts_as_identity() -> None:
    samf = SAMF(channels=16, vfm_channels=24, identity_init=True).train()
    x, d = torch.randn(2, 16, 8, 8), torch.randn(2, 24, 4, 4)
    assert torch.equal(samf(x, d), x)
    with pytest.raises(ValueError, match="ReLU"):
        SAMF(channels=16, vfm_channels=24, identity_init=True, out_act=True)
    assert not torch.allclose(SAMF(channels=16, vfm_channels=24).train()(x, d), x)  # default unchanged


def _bottlenecks(model: CoISD, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    feats = model.host.encode(x)
    return model.samf(feats.bottleneck, model.vfm_features(x)), feats.bottleneck


def test_identity_init_main_bottleneck_equals_light_and_samf_learns() -> None:
    model = _coisd("acm", identity_init=True)
    batch = _batch()
    norm = Normalize(0.5, 0.25)
    fused, plain = _bottlenecks(model, norm(batch["image"]))
    assert _cosine(fused, plain) == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(fused, plain)
    model.eval()  # the host's head has dropout: equal outputs need equal dropout masks
    with torch.no_grad():
        main, light = model.forward_branches(batch["image"], norm(batch["image"]))
    assert torch.equal(main, light)
    model.train()

    objective = CoISDObjective("softiou", lam=1.0, normalize=norm)
    opt = torch.optim.AdamW(model.samf.parameters(), lr=1e-3)
    for step in range(2):
        opt.zero_grad()
        objective(model, _batch(seed=step))[0].backward()
        if step == 0:
            opt.step()
    dead = [n for n, p in model.samf.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not dead, f"no gradient after one step: {dead}"
    fused, plain = _bottlenecks(model, norm(batch["image"]))
    assert not torch.allclose(fused, plain)


def test_default_samf_chain_does_not_start_as_identity() -> None:
    model = _coisd("acm")
    fused, plain = _bottlenecks(model, Normalize(0.5, 0.25)(_batch()["image"]))
    assert _cosine(fused, plain) < 0.99
