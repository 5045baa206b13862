"""Host networks: shapes at odd sizes, the encode/decode contract, deep supervision, sizes, I/O."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from irlib.errors import IrlibInputError
from irlib.models import (HostFeatures, SirstHost, count_flops, count_macs, count_params, create_model,
                          list_models, load_host, save_host)
from irlib.models.alcnet import CyclicLocalContrast, patch_contrast

HOSTS = ["acm", "alcnet", "dnanet", "mshnet", "unet"]
SIZES = [(64, 64), (72, 88)]  # the second is not a multiple of 32 (nor of 16)

# published sizes (BasicIRSTD, 1x1x256x256) and our tolerance
PUBLISHED = {"acm": 0.398e6, "alcnet": 0.52e6, "dnanet": 4.697e6}
TOLERANCE = 0.05
# exact counts of our implementations, so any change of architecture is caught
EXACT = {"acm": 397_823, "alcnet": 509_625, "dnanet": 4_696_568, "mshnet": 4_065_481, "unet": 2_161_841}


@pytest.fixture(scope="module")
def hosts() -> dict[str, SirstHost]:
    torch.manual_seed(0)
    return {name: create_model(name) for name in HOSTS}


def _as_list(out) -> list[torch.Tensor]:
    return out if isinstance(out, list) else [out]


def test_registry():
    assert set(HOSTS) <= set(list_models())
    assert list_models() == sorted(list_models())
    with pytest.raises(IrlibInputError, match="registered hosts"):
        create_model("no-such-net")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", HOSTS)
def test_forward_backward_any_size(hosts, name, size):
    host = hosts[name].train()
    x = torch.randn(2, 1, *size)
    outs = _as_list(host(x))
    assert all(o.shape == (2, 1, *size) for o in outs)
    sum(o.square().mean() for o in outs).backward()
    missing = [n for n, p in host.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in host.parameters())
    host.zero_grad(set_to_none=True)
    host.eval()
    with torch.no_grad():
        out = host(x[:1])
    assert isinstance(out, torch.Tensor) and out.shape == (1, 1, *size)


@pytest.mark.parametrize("name", HOSTS)
def test_interface_conformance(hosts, name):
    host = hosts[name].eval()
    assert isinstance(host, SirstHost) and host.in_chans == 1
    assert host.bottleneck_channels % 2 == 0
    assert len(host.stage_channels) == len(host.stage_strides) >= 1
    h, w = 72, 88
    x = torch.randn(2, 1, h, w)
    with torch.no_grad():
        feats = host.encode(x)
        assert isinstance(feats, HostFeatures)
        m = host.pad_multiple
        hp, wp = -(-h // m) * m, -(-w // m) * m
        assert len(feats.stages) == len(host.stage_channels)
        for t, c, s in zip(feats.stages, host.stage_channels, host.stage_strides):
            assert t.shape == (2, c, hp // s, wp // s)
        s = host.bottleneck_stride
        assert feats.bottleneck.shape == (2, host.bottleneck_channels, hp // s, wp // s)
        before = [t.clone() for t in [*feats.stages, feats.bottleneck]]
        out = host.decode(feats, x.shape[-2:])
        assert torch.equal(out, host(x))
        assert torch.equal(out, host.decode(feats, (h, w)))  # decoding twice is allowed
        assert all(torch.equal(a, b) for a, b in zip(before, [*feats.stages, feats.bottleneck]))
        swapped = dataclasses.replace(feats, bottleneck=torch.randn_like(feats.bottleneck))
        out2 = host.decode(swapped, (h, w))
        assert out2.shape == out.shape and not torch.allclose(out, out2)


@pytest.mark.parametrize("bad", [torch.zeros(1, 64, 64), torch.zeros(1, 3, 64, 64),
                                 torch.zeros(1, 1, 64, 64, dtype=torch.long)], ids=["3d", "3ch", "int"])
def test_bad_input_raises(hosts, bad):
    with pytest.raises(IrlibInputError):
        hosts["acm"](bad)


@pytest.mark.parametrize("name,n_maps", [("dnanet", 4), ("mshnet", 5)])
def test_deep_supervision(hosts, name, n_maps):
    host = hosts[name]
    assert host.deep_supervision
    x = torch.randn(2, 1, 48, 40)
    host.train()
    torch.manual_seed(1)
    maps = host(x)
    assert isinstance(maps, list) and len(maps) == n_maps
    assert all(m.shape == (2, 1, 48, 40) for m in maps)
    host.deep_supervision = False  # the final map alone, same computation
    try:
        torch.manual_seed(1)
        final = host(x)
    finally:
        host.deep_supervision = True
    assert isinstance(final, torch.Tensor) and torch.allclose(final, maps[0])
    host.eval()
    assert isinstance(host(x), torch.Tensor)


def test_dnanet_without_deep_supervision():
    host = create_model("dnanet", deep_supervision=False).train()
    assert count_params(host) == EXACT["dnanet"] - 3 * 17  # three 1x1 side heads fewer
    assert isinstance(host(torch.randn(2, 1, 32, 32)), torch.Tensor)


@pytest.mark.parametrize("name", HOSTS)
def test_parameter_counts(hosts, name):
    n = count_params(hosts[name])
    assert n == EXACT[name]
    if name in PUBLISHED:
        assert abs(n - PUBLISHED[name]) / PUBLISHED[name] < TOLERANCE


def test_variant_sizes():
    # ALCNet without the decoder stages ~ BasicIRSTD's live 0.427 M (BLAM instead of AsymBi)
    assert count_params(create_model("alcnet", decoder_blocks=0)) == 416_697
    # the classic 64-wide U-Net of BasicIRSTD
    assert count_params(create_model("unet", base_width=64)) == 34_525_889


def test_complexity_counts(hosts):
    host = hosts["acm"].train()
    flops = count_flops(host, (1, 1, 64, 64))
    assert flops > 0 and count_macs(host, (1, 1, 64, 64)) == flops // 2
    assert host.training  # restored
    big = count_flops(host, (1, 1, 128, 128))
    assert 3.5 < big / flops < 4.5  # convolutions scale with the area
    frozen = create_model("unet", base_width=4)
    for p in frozen.head.parameters():
        p.requires_grad_(False)
    assert count_params(frozen, trainable_only=True) == count_params(frozen) - 5


def test_local_contrast():
    x = torch.zeros(1, 1, 15, 15)
    assert torch.equal(patch_contrast(x + 3.0, 2), torch.zeros_like(x))
    x[0, 0, 7, 7] = 1.0
    c = CyclicLocalContrast([2, 3])(x)
    assert c.shape == x.shape and c[0, 0, 7, 7] == 1.0  # a bright point against a flat surround
    assert c[0, 0, 7, 7] == c.max()


@pytest.mark.parametrize("name,kwargs", [("acm", {}), ("alcnet", {"decoder_blocks": 1}),
                                         ("dnanet", {"deep_supervision": False}), ("mshnet", {}),
                                         ("unet", {"base_width": 8})])
def test_save_load_roundtrip(tmp_path, name, kwargs):
    torch.manual_seed(0)
    host = create_model(name, **kwargs)
    host.train()
    with torch.no_grad():
        host(torch.randn(2, 1, 32, 32))  # move the BN running statistics off their defaults
    host.eval()
    x = torch.randn(1, 1, 40, 56)
    with torch.no_grad():
        ref = host(x)
    path = save_host(host, tmp_path / f"{name}.pt")
    loaded = load_host(path).eval()
    assert type(loaded) is type(host) and loaded.model_kwargs == kwargs
    with torch.no_grad():
        assert torch.equal(loaded(x), ref)
    # a bare state_dict loads through create_model with the same kwargs
    torch.save(host.state_dict(), tmp_path / "bare.pt")
    bare = create_model(name, weights=tmp_path / "bare.pt", **kwargs).eval()
    with torch.no_grad():
        assert torch.equal(bare(x), ref)


def test_checkpoint_errors(tmp_path):
    host = create_model("unet", base_width=4)
    path = save_host(host, tmp_path / "u.pt")
    with pytest.raises(IrlibInputError, match="holds model 'unet'"):
        create_model("acm", weights=path)
    with pytest.raises(IrlibInputError, match="does not fit"):
        create_model("unet", weights=path, base_width=8)
    with pytest.raises(IrlibInputError, match="not found"):
        load_host(tmp_path / "missing.pt")
    torch.save(host.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(IrlibInputError, match="bare state_dict"):
        load_host(tmp_path / "bare.pt")
    from irlib.models import UNet

    with pytest.raises(IrlibInputError, match="registered model name"):
        save_host(UNet(base_width=4), tmp_path / "x.pt")


def test_register_model_rejects_a_second_owner():
    from irlib.models import register_model

    def acm(**kwargs):  # same name, different function
        raise AssertionError

    with pytest.raises(ValueError, match="already registered"):
        register_model(acm)
    assert "acm" in list_models()


def test_topdown_gate_spread_collapses_at_batch_two() -> None:
    """At batch 2 BatchNorm after global pooling sees two values per channel: the gate depends on
    the partner image. The running statistics are left untouched."""
    from irlib.models import create_model
    from irlib.models.diagnostics import topdown_gate_spread

    torch.manual_seed(0)
    model = create_model("acm").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(6, 1, 64, 64) * torch.linspace(0.5, 2.0, 6)[:, None, None, None]
    rows = topdown_gate_spread(model, x, batch_sizes=(2, 6), trials=4)
    by = {(r["module"], r["batch_size"]): r for r in rows}
    assert set(by) == {("fuse1.topdown", 2), ("fuse2.topdown", 2), ("fuse1.topdown", 6), ("fuse2.topdown", 6)}
    assert by[("fuse2.topdown", 2)]["spread"] > by[("fuse2.topdown", 6)]["spread"]
    assert by[("fuse2.topdown", 6)]["spread"] < 1e-6  # batch = all images: nothing left to vary
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
