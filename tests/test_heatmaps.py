"""irlib.heatmaps: PCA on known tensors, map shapes, SAMF / SCAM maps against the modules, titles
naming the (stand-in) encoder and the training state, files written."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch

from irlib import heatmaps as hm
from irlib.data import open_dataset, reference_normalization
from irlib.engine.checkpoint import save_checkpoint, trainable_state
from irlib.errors import IrlibInputError
from irlib.fdep import CoISD
from irlib.models import create_model
from irlib.point import ScamTeacher
from irlib.simir.student import SimIRStudent
from irlib.vfm import create_encoder

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def _image(h: int = 40, w: int = 56) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = (0.3 + 0.1 * rng.random((h, w))).astype(np.float32)
    mask = np.zeros((h, w), bool)
    mask[20:23, 30:33] = True
    image[mask] = 0.9
    return image, mask


def _encoder():
    return create_encoder("tiny_cnn_random")


def _minmax(a: np.ndarray) -> np.ndarray:
    return (a - a.min()) / (a.max() - a.min())


# ----------------------------------------------------------------------------- PCA and maps
def test_feature_pca_recovers_known_components():
    yy, xx = np.mgrid[0:8, 0:8].astype(np.float64)
    p1 = xx - xx.mean()
    p1[7, 7] += 5.0  # its largest |value| is positive: the sign rule keeps it
    p1 -= p1.mean()
    p2 = np.cos(np.pi * yy / 7.0)
    p2[0, 3] -= 4.0  # its largest |value| is negative: the sign rule flips it
    p2 -= p2.mean()
    p2 -= (p2 * p1).sum() / (p1 * p1).sum() * p1  # orthogonal to p1
    p1, p2 = p1 / np.linalg.norm(p1), p2 / np.linalg.norm(p2)
    f = np.stack([3 * p1 + 7.0, 1 * p2 - 2.0, 0 * p1, 0 * p1])  # channel offsets are removed
    rot, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(4, 4)))  # PCA ignores a channel rotation
    for feature in (f, np.einsum("ij,jhw->ihw", rot, f)):
        out = hm.feature_pca(torch.tensor(feature, dtype=torch.float32)[None])
        assert out.rgb.shape == (8, 8, 3) and out.rgb.dtype == np.float32
        np.testing.assert_allclose(out.explained, [0.9, 0.1, 0.0], atol=1e-5)
        np.testing.assert_allclose(out.rgb[..., 0], _minmax(p1), atol=1e-5)
        second = out.rgb[..., 1]
        assert p2.flat[np.abs(p2).argmax()] < 0
        np.testing.assert_allclose(second, _minmax(-p2), atol=1e-5)
        assert not out.rgb[..., 2].any()  # no third component


def test_feature_pca_few_channels_and_bad_shapes():
    out = hm.feature_pca(torch.randn(2, 5, 6), k=3)
    assert out.rgb.shape == (5, 6, 3) and not out.rgb[..., 2].any()
    assert out.explained[2] == 0 and out.explained.sum() == pytest.approx(1.0)
    assert out.rgb[..., :2].min() == 0.0 and out.rgb[..., :2].max() == 1.0
    with pytest.raises(IrlibInputError, match="one feature map"):
        hm.feature_pca(torch.randn(2, 3, 4, 4))
    with pytest.raises(IrlibInputError, match="one feature map"):
        hm.activation_norm(np.zeros((4, 4)))


def test_activation_norm_and_to_image():
    f = torch.zeros(3, 4, 5)
    f[:, 2, 3] = torch.tensor([3.0, 0.0, 4.0])
    f[0, 0, 0] = 2.5
    norm = hm.activation_norm(f)
    assert norm.shape == (4, 5) and norm[2, 3] == 1.0 and norm[0, 0] == pytest.approx(0.5) and norm.min() == 0
    grid = np.arange(6).reshape(2, 3)
    up = hm.to_image(grid, (7, 10), 4)
    assert up.shape == (7, 10)
    assert up[3, 3] == 0 and up[4, 4] == 4 and up[6, 9] == 5  # cell = pixel // stride, clipped
    assert hm.to_image(np.zeros((2, 3, 3)), (7, 10), 4.0).shape == (7, 10, 3)


def test_zoom_window_stays_inside_and_centres_on_target():
    _, mask = _image()
    rs, cs = hm.zoom_window(mask, mask.shape, 16)
    assert (rs.stop - rs.start, cs.stop - cs.start) == (16, 16)
    assert mask[rs, cs].sum() == mask.sum()
    rs, cs = hm.zoom_window(None, (40, 56), 64)
    assert (rs.start, cs.start) == (0, 0)


# ----------------------------------------------------------------------------- labels, files, data
def test_labels_name_the_stand_in_and_training_state():
    enc = _encoder()
    label = hm.vfm_label(enc)
    assert label.startswith("tiny_cnn_random (") and enc.description in label and label.endswith("[STAND-IN]")
    enc.is_stand_in = False
    assert "STAND-IN" not in hm.vfm_label(enc)
    title = hm.figure_title("acm", label, "Misc_1")
    assert title == f"acm ({hm.UNTRAINED}) | encoder: {label} | image: Misc_1"
    assert "encoder: none" in hm.figure_title("acm", None, "x", trained="trained: a.pt")
    assert hm.figure_path("/r", "enc", "efficientnet_lite0", "a b/c", "").name == "enc_efficientnet_lite0_a-b-c_x.png"
    with pytest.raises(IrlibInputError):
        hm.figure_path("/r")


def test_pick_samples_and_normalisation():
    ds = open_dataset("synthetic", "test", num_images=6, size=64)
    picked = hm.pick_samples(ds, 2)
    assert len(picked) == 2 and all(s.mask.any() for s in picked)
    names = [ds[3].name, ds[1].name]
    assert [s.name for s in hm.pick_samples(ds, 1, names)] == names
    with pytest.raises(IrlibInputError, match="not in this split"):
        hm.pick_samples(ds, 1, ["nope"])
    norm, why = hm.dataset_normalize("NUAA-SIRST", [])
    assert norm.to_dict()["mean"][0] == pytest.approx(reference_normalization("NUAA-SIRST")[0])
    assert "BasicIRSTD" in why
    norm, why = hm.dataset_normalize("synthetic", picked)
    assert norm.to_dict()["mean"][0] == pytest.approx(np.mean([s.image.mean() for s in picked]), rel=1e-5)
    assert "measured on 2 images" in why


def test_load_trained_round_trip(tmp_path):
    torch.manual_seed(0)
    trained = CoISD(create_model("acm"), _encoder())
    save_checkpoint(tmp_path / "last.pt", {"model": trainable_state(trained)})
    torch.manual_seed(1)
    fresh = CoISD(create_model("acm"), _encoder())
    assert hm.load_trained(fresh, tmp_path / "last.pt") == "trained: last.pt"
    for k, v in trained.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v)


# ----------------------------------------------------------------------------- figures
def test_encoder_maps_shapes_and_figure(tmp_path):
    image, mask = _image()
    maps = hm.encoder_maps(_encoder(), image)
    assert maps.names == ["stage 1", "stage 2", "stage 3", "stage 4"] and maps.strides == [4.0, 8.0, 16.0, 32.0]
    for s, pca, norm in zip(maps.strides, maps.pca, maps.norms):
        cells = (-(-40 // int(s)), -(-56 // int(s)))
        assert pca.rgb.shape == (*cells, 3) and norm.shape == cells
        assert 0 <= norm.min() and norm.max() == pytest.approx(1.0)
    path = tmp_path / "enc.png"
    fig = hm.plot_encoder_maps(image, mask, maps, "img_7", path=path, zoom=16)
    title = fig.get_suptitle()
    assert "[STAND-IN]" in title and "tiny random CNN" in title and "img_7" in title
    assert path.stat().st_size > 1000


def test_samf_terms_reproduce_the_module():
    torch.manual_seed(0)
    model = CoISD(create_model("acm"), _encoder(), gate="sigmoid").eval()
    block = model.samf.blocks[0]
    x = torch.randn(1, 64, 3, 4)
    d = model.vfm_features(torch.rand(1, 1, 48, 64))[0]
    g, b = hm.samf_terms(block, d, x.shape[-2:])
    assert g.shape == b.shape == (1, 32, 3, 4) and 0 < g.min() and g.max() < 1
    x1, x2 = torch.chunk(x, 2, dim=1)
    y = torch.cat([block.mul_branch(x1 * g), block.add_branch(x2 + b)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(block.out(y + x), block(x, d))


def test_samf_maps_shapes_identity_start_and_figure(tmp_path):
    image, mask = _image()
    norm, _ = hm.dataset_normalize("NUAA-SIRST", [])
    torch.manual_seed(0)
    model = CoISD(create_model("acm"), _encoder()).train()
    maps = hm.samf_maps(model, image, norm)
    assert model.training  # restored
    cells = (-(-40 // 16), -(-56 // 16))
    assert len(maps.multiplier) == len(maps.shift) == 4
    assert all(m.shape == cells for m in maps.multiplier + maps.shift + [maps.norm_ratio, maps.change])
    assert maps.main.shape == maps.light.shape == image.shape and maps.stride == 16
    assert np.abs(maps.main - maps.light).max() > 0 and maps.change.max() > 0
    # a chain that starts as the identity leaves the bottleneck and the prediction unchanged
    torch.manual_seed(0)
    ident = hm.samf_maps(CoISD(create_model("acm"), _encoder(), identity_init=True), image, norm)
    np.testing.assert_allclose(ident.norm_ratio, 1.0, rtol=1e-6)
    np.testing.assert_allclose(ident.change, 0.0, atol=1e-7)
    np.testing.assert_allclose(ident.main, ident.light, atol=1e-7)
    path = tmp_path / "samf.png"
    fig = hm.plot_samf_maps(image, mask, maps, "acm + FDEP", "img_7", path=path)
    title = fig.get_suptitle()
    assert "acm + FDEP (untrained" in title and "[STAND-IN]" in title and "img_7" in title
    assert path.stat().st_size > 1000
    with pytest.raises(IrlibInputError, match="CoISD"):
        hm.samf_maps(create_model("acm"), image, norm)


def test_scam_affine_matches_module_and_figure(tmp_path):
    image, _ = _image()
    torch.manual_seed(0)
    teacher = ScamTeacher(create_model("acm"), _encoder())
    aff = hm.scam_affine(teacher, image)
    host = teacher.host
    assert [g.size for g in aff.gamma] == [b.size for b in aff.beta] == [*host.stage_channels, host.bottleneck_channels]
    assert aff.names[-1] == "bottleneck (stride 16)" and aff.scale == teacher.scam.scale
    with torch.no_grad():
        gammas, _ = teacher.scam.affine(teacher.vfm_features(torch.from_numpy(image)[None, None]))
    np.testing.assert_allclose(aff.gamma[0], gammas[0].flatten().numpy())
    with torch.no_grad():
        teacher.scam.gate.zero_()  # gamma = 1 + tanh(0)
    assert all(np.all(g == 1.0) for g in hm.scam_affine(teacher, image).gamma)
    path = tmp_path / "scam.png"
    fig = hm.plot_scam_affine(aff, "acm + SCAM", "img_7", path=path)
    title = fig.get_suptitle()
    assert "acm + SCAM (untrained" in title and "[STAND-IN]" in title and "img_7" in title
    assert path.stat().st_size > 1000


def test_simir_figure_says_untrained(tmp_path):
    torch.manual_seed(0)
    model = SimIRStudent(arch="repvit_m0_9", stem_stride=4, dim=32, ffn_dim=64, decoder_mlp_dim=64,
                         dense_ffn_dim=32).eval()
    image, mask = _image(32, 48)
    path = tmp_path / "simir.png"
    title = hm.simir_figure(model, image, mask, "img_7", path=path).get_suptitle()
    assert title.startswith(f"SimIRStudent ({hm.UNTRAINED}) | encoder: repvit_m0_9") and "img_7" in title
    assert path.stat().st_size > 1000


def test_overlay_figure_counts_and_title(tmp_path):
    image, mask = _image()
    prob = mask.astype(np.float32)
    prob[2:4, 2:4] = 0.9  # one false alarm
    path = tmp_path / "ov.png"
    fig = hm.overlay_figure(image, prob, mask, "acm_seed42", "img_7", trained="trained: x.pt", path=path)
    assert "acm_seed42 (trained: x.pt) | encoder: none | image: img_7" in fig.get_suptitle()
    assert "1/1 hits, 1 false regions" in fig.axes[1].get_title()
    assert path.stat().st_size > 1000
