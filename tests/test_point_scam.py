"""SCAM (semantic-conditioned affine modulation) and cluster-level sample reweighting."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from irlib.data import SyntheticSirst, open_dataset
from irlib.errors import IrlibInputError
from irlib.models import create_model, list_models
from irlib.point.clusters import (ClusterTable, ClusterWeights, cluster_count, cluster_dataset,
                                  cluster_descriptors, dataset_images, describe_images, image_descriptors,
                                  select_features)
from irlib.point.scam import DEFAULT_SCALE, GATE_L1_WEIGHT, SCAM, ScamTeacher
from irlib.vfm import create_encoder

SIZE = 64


def _teacher(host_name: str, seed: int = 0, encoder: str = "tiny_cnn_random", **kwargs) -> ScamTeacher:
    torch.manual_seed(seed)
    return ScamTeacher(create_model(host_name), create_encoder(encoder, seed=seed), **kwargs)


def _raw(batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _outs(out) -> list[torch.Tensor]:
    return out if isinstance(out, list) else [out]


# ----------------------------------------------------------------------------- SCAM
@pytest.mark.parametrize("host_name", list_models())
def test_scam_keeps_shapes_for_every_host(host_name: str) -> None:
    teacher = _teacher(host_name).eval()
    raw = _raw()
    x = (raw - 0.5) / 0.25
    with torch.no_grad():
        feats = teacher.host.encode(x)
        modulated = teacher.modulate(feats, teacher.vfm_features(raw))
        out, plain = teacher(raw, x), teacher.host(x)
    assert [f.shape for f in modulated.stages] == [f.shape for f in feats.stages]
    assert modulated.bottleneck.shape == feats.bottleneck.shape
    assert [o.shape for o in _outs(out)] == [o.shape for o in _outs(plain)]
    assert all(o.shape == (1, 1, SIZE, SIZE) for o in _outs(out))
    assert not torch.equal(_outs(out)[0], _outs(plain)[0]), "SCAM must change the teacher's output"
    assert teacher.scam.feature_channels == [*teacher.host.stage_channels, teacher.host.bottleneck_channels]


def test_training_mode_deep_supervision_lists_keep_their_length() -> None:
    teacher = _teacher("dnanet").train()
    raw = _raw(2)
    out = teacher(raw, raw)
    assert isinstance(out, list) and len(out) == len(teacher.host(raw))
    assert all(o.shape == (2, 1, SIZE, SIZE) for o in out)


@pytest.mark.parametrize("host_name", ["acm", "dnanet"])
def test_scale_zero_is_exact_identity(host_name: str) -> None:
    teacher = _teacher(host_name, scale=0.0).eval()
    raw = _raw(seed=3)
    with torch.no_grad():
        feats = teacher.host.encode(raw)
        same = teacher.modulate(feats, teacher.vfm_features(raw))
        assert all(a is b for a, b in zip(same.stages, feats.stages)) and same.bottleneck is feats.bottleneck
        for a, b in zip(_outs(teacher(raw, raw)), _outs(teacher.host(raw))):
            assert torch.equal(a, b)
        teacher.scam.scale = DEFAULT_SCALE
        assert not torch.equal(_outs(teacher(raw, raw))[0], _outs(teacher.host(raw))[0])


def test_scale_comes_from_argument_then_host_then_default() -> None:
    assert _teacher("acm").scam.scale == DEFAULT_SCALE == 0.12
    host = create_model("acm")
    host.modulation_scale = 0.55
    enc = create_encoder("tiny_cnn_random", seed=0)
    assert ScamTeacher(host, enc).scam.scale == 0.55
    assert ScamTeacher(host, enc, scale=0.3).scam.scale == 0.3
    for bad in (-0.1, float("nan"), float("inf"), True):
        with pytest.raises(IrlibInputError, match="modulation scale"):
            ScamTeacher(host, enc, scale=bad)


def test_modulation_follows_the_formula() -> None:
    torch.manual_seed(0)
    scam = SCAM([3, 5], [8, 8], hidden_dim=16, scale=0.4)
    feats = [torch.randn(2, 3, 6, 6), torch.randn(2, 5, 3, 3)]
    vfm = [torch.randn(2, 8, 4, 4), torch.randn(2, 8, 4, 4)]
    assert scam.fusion.proj is None, "maps of equal width and grid are fused as they are"
    assert torch.allclose(scam.fusion.weights, torch.full((2,), 0.5))
    fv = 0.5 * vfm[0] + 0.5 * vfm[1]
    attn = torch.softmax(scam.pool.score(fv).flatten(2), dim=-1)
    g = (fv.flatten(2) * attn).sum(-1)
    assert torch.allclose(scam.condition(vfm), g, atol=1e-6)
    m = scam.mlp(g)
    gammas, betas = scam.affine(vfm)
    assert torch.allclose(gammas[0].flatten(1), 1 + torch.tanh(m[:, 0:3]), atol=1e-6)
    assert torch.allclose(betas[0].flatten(1), m[:, 3:6], atol=1e-6)
    assert torch.allclose(gammas[1].flatten(1), 1 + torch.tanh(m[:, 6:11]), atol=1e-6)
    assert torch.allclose(betas[1].flatten(1), m[:, 11:16], atol=1e-6)
    out = scam(feats, vfm)
    for f, o, gm, b in zip(feats, out, gammas, betas):
        assert torch.allclose(o, (1 + 0.4 * (gm - 1)) * f + 0.4 * b, atol=1e-6)
        assert bool((gm > 0).all() and (gm < 2).all())
    with torch.no_grad():
        scam.gate.zero_()
    for f, o, b in zip(feats, scam(feats, vfm), scam.affine(vfm)[1]):
        assert torch.allclose(o, f + 0.4 * b, atol=1e-6), "gate 0 leaves only the shift"


def test_vfm_gets_no_gradient_and_everything_else_trains() -> None:
    teacher = _teacher("acm").train()
    assert not teacher.encoder.training
    raw = _raw(2)
    vfm = teacher.vfm_features(raw)
    assert all(not v.requires_grad for v in vfm)
    loss = _outs(teacher(raw, raw))[0].sigmoid().mean() + GATE_L1_WEIGHT * teacher.gate_penalty()
    loss.backward()
    assert all(not p.requires_grad and p.grad is None for p in teacher.encoder.parameters())
    dead = [n for n, p in teacher.scam.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not dead, f"SCAM parameters without gradient: {dead}"
    stem = next(p for p in teacher.host.parameters() if p.dim() == 4)
    assert stem.grad is not None and bool(stem.grad.abs().sum() > 0), "the shared encoder must learn"


def test_gate_penalty_is_mean_absolute_gate() -> None:
    teacher = _teacher("acm")
    assert GATE_L1_WEIGHT == 0.005
    assert float(teacher.gate_penalty().detach()) == pytest.approx(1.0)
    n = teacher.scam.gate.numel()
    assert n == sum(teacher.scam.feature_channels) == 16 + 32 + 64
    values = torch.linspace(-2.0, 1.0, n)
    with torch.no_grad():
        teacher.scam.gate.copy_(values)
    penalty = teacher.gate_penalty()
    assert float(penalty.detach()) == pytest.approx(float(values.abs().mean()), rel=1e-6)
    penalty.backward()
    assert torch.allclose(teacher.scam.gate.grad, torch.sign(values) / n)


@pytest.mark.parametrize("bn_stats,changes", [("student", False), ("both", True)])
def test_teacher_pass_and_batchnorm_running_statistics(bn_stats: str, changes: bool) -> None:
    teacher = _teacher("acm", bn_stats=bn_stats).train()
    before = {k: v.clone() for k, v in teacher.host.state_dict().items() if "running" in k}
    teacher(_raw(2), _raw(2))
    after = {k: v for k, v in teacher.host.state_dict().items() if "running" in k}
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert bool(moved) == changes, moved[:3]


def test_export_student_is_the_plain_host() -> None:
    teacher = _teacher("acm").train()
    opt = torch.optim.AdamW([p for p in teacher.parameters() if p.requires_grad], lr=1e-2)
    for step in range(2):
        raw = _raw(2, seed=step)
        mask = (raw > 0.9).float()
        loss = sum(torch.nn.functional.binary_cross_entropy_with_logits(_outs(o)[0], mask)
                   for o in (teacher(raw, raw), teacher.student(raw))) + GATE_L1_WEIGHT * teacher.gate_penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
    student = teacher.export_student()
    assert type(student) is type(teacher.host) and not student.training
    assert set(student.state_dict()) == set(create_model("acm").state_dict())
    for k, v in teacher.host.state_dict().items():
        assert torch.equal(student.state_dict()[k], v), k
    assert not {p.data_ptr() for p in student.parameters()} & {p.data_ptr() for p in teacher.parameters()}
    assert not any(isinstance(m, SCAM) for m in student.modules())
    teacher.eval()
    raw = _raw(2, seed=7)
    with torch.no_grad():
        assert torch.equal(student(raw), teacher.student(raw))
        assert not torch.equal(student(raw), teacher(raw, raw)), "the teacher must differ from the student"


def test_stand_in_encoder_is_recorded() -> None:
    info = _teacher("acm").describe()
    assert info["encoder"] == "tiny_cnn_random" and info["encoder_is_stand_in"] is True
    assert info["vfm_layers"] == create_encoder("tiny_cnn_random").feature_names
    assert info["modulation_scale"] == DEFAULT_SCALE and info["modulated_channels"] == [16, 32, 64]


def test_vit_maps_fuse_directly_cnn_maps_are_aligned() -> None:
    vit = _teacher("acm", encoder="tiny_vit_random").eval()
    assert vit.scam.fusion.proj is None and vit.scam.fusion.dim == 32
    cnn = _teacher("acm", vfm_layers=[0, 3], grid="finest").eval()
    assert cnn.scam.fusion.proj is not None and cnn.scam.fusion.dim == max(cnn.encoder.feature_channels[i]
                                                                           for i in (0, 3))
    raw = _raw()
    with torch.no_grad():
        for t in (vit, cnn):
            assert t(raw, raw).shape == (1, 1, SIZE, SIZE)
    only_stages = _teacher("acm", modulate_bottleneck=False)
    assert only_stages.scam.feature_channels == [16, 32]


def test_bad_inputs_raise_irlib_errors() -> None:
    enc = create_encoder("tiny_cnn_random", seed=0)
    host = create_model("acm")
    with pytest.raises(IrlibInputError, match="vfm_layers"):
        ScamTeacher(host, enc, vfm_layers=[0, 9])
    with pytest.raises(IrlibInputError, match="SirstHost"):
        ScamTeacher(torch.nn.Conv2d(1, 1, 1), enc)
    with pytest.raises(IrlibInputError, match="bn_stats"):
        ScamTeacher(host, enc, bn_stats="teacher")
    if hasattr(enc, "unfreeze"):  # an unfrozen encoder is refused, before and after wrapping
        with pytest.raises(IrlibInputError, match="freeze"):
            ScamTeacher(host, enc.unfreeze())
        wrapped = ScamTeacher(host, enc.freeze())
        enc.unfreeze()
        with pytest.raises(IrlibInputError, match="freeze"):
            wrapped.vfm_features(_raw())
        enc.freeze()
    teacher = ScamTeacher(host, enc).eval()
    raw = _raw()
    with pytest.raises(IrlibInputError, match="VFM maps"):
        teacher(raw, raw, vfm=teacher.vfm_features(raw)[:2])
    feats = teacher.host.encode(raw)
    with pytest.raises(IrlibInputError, match="channels"):
        teacher.scam(feats.stages, teacher.vfm_features(raw))


# ----------------------------------------------------------------------------- descriptors
@pytest.fixture(scope="module")
def synthetic_descriptors() -> pd.DataFrame:
    return describe_images(dataset_images(SyntheticSirst(40, size=SIZE, seed=0)))


def test_descriptors_on_synthetic_images(synthetic_descriptors: pd.DataFrame) -> None:
    d = synthetic_descriptors
    assert d.shape[0] == 40 and d.shape[1] >= 45 and list(d.index[:1]) == ["syn0_000000"]
    assert np.isfinite(d.to_numpy()).all()
    img = SyntheticSirst(1, size=SIZE, seed=0)[0].image
    one = image_descriptors(img)
    assert one["mean"] == pytest.approx(float(img.mean())) and one["std"] == pytest.approx(float(img.std()))
    assert one["dynamic_range"] == pytest.approx(float(img.max() - img.min()))
    groups = ["glcm_", "lbp_", "gabor_", "psd_", "mscn_", "otsu_", "grad_", "edge_", "noise_sigma", "tail99"]
    assert all(any(k.startswith(g) for k in one) for g in groups)
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 0.05, img.shape), 0, 1).astype(np.float32)
    assert image_descriptors(noisy)["noise_sigma"] > 2 * one["noise_sigma"]
    assert image_descriptors(img * 0.5 + 0.5)["mean"] > one["mean"]


def test_descriptors_of_simple_images() -> None:
    flat = image_descriptors(np.full((32, 32), 0.4, np.float32))
    assert set(flat) == set(image_descriptors(np.random.default_rng(0).random((32, 48)).astype(np.float32)))
    assert all(math.isfinite(v) for v in flat.values())
    assert flat["std"] == 0 and flat["edge_density"] == 0 and flat["noise_sigma"] == 0
    halves = np.zeros((32, 32), np.float32)
    halves[:, 16:] = 1.0
    two = image_descriptors(halves)
    assert two["entropy"] == pytest.approx(1.0) and two["otsu_fg_ratio"] == pytest.approx(0.5)
    assert two["edge_anisotropy"] == pytest.approx(1.0), "a vertical edge has only x gradients"
    for bad, what in [(np.zeros((4, 4), np.float32), "at least"), (np.zeros((32, 32), np.uint8), "float"),
                      (np.full((32, 32), 2.0), r"\[0, 1\]"), (np.zeros((2, 32, 32)), "2-D")]:
        with pytest.raises(IrlibInputError, match=what):
            image_descriptors(bad)


# ----------------------------------------------------------------------------- clustering
def test_cluster_count_rule() -> None:
    assert cluster_count(2755) == 256  # the release's SIRST3 setting
    assert cluster_count(213) == 20 and cluster_count(40) == 4
    assert cluster_count(1) == 1 and cluster_count(2) == 2 and cluster_count(5) == 2
    assert cluster_count(100, images_per_cluster=5) == 20
    with pytest.raises(IrlibInputError):
        cluster_count(0)


def test_feature_filter_drops_constant_and_correlated_columns() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    frame = pd.DataFrame({"a": a, "a_twice": 2 * a + 1e-3 * rng.normal(size=50), "b": b, "const": 1.0})
    assert select_features(frame) == ["a_twice", "b"], "the higher-variance twin is kept"


def test_clustering_is_deterministic_by_seed(synthetic_descriptors: pd.DataFrame) -> None:
    first = cluster_descriptors(synthetic_descriptors, seed=1)
    again = cluster_descriptors(synthetic_descriptors, seed=1)
    assert first.num_clusters == 4 == cluster_count(40)
    assert np.array_equal(first.clusters, again.clusters) and first.features == again.features
    assert set(first.clusters.tolist()) == set(range(4)) and first.sizes().sum() == 40
    assert len(first.features) <= 32
    other = cluster_descriptors(synthetic_descriptors, k=7, seed=2, refine_top=None)
    assert other.num_clusters == 7 and set(other.clusters.tolist()) == set(range(7))
    for bad_k in (0, 41):
        with pytest.raises(IrlibInputError, match="k="):
            cluster_descriptors(synthetic_descriptors, k=bad_k)


def test_cluster_table_csv_round_trip(synthetic_descriptors: pd.DataFrame, tmp_path) -> None:
    table = cluster_descriptors(synthetic_descriptors, seed=1)
    back = ClusterTable.from_csv(table.to_csv(tmp_path / "sub" / "clusters.csv"))
    assert back.names == table.names and np.array_equal(back.clusters, table.clusters)
    assert back.num_clusters == table.num_clusters
    pd.testing.assert_frame_equal(back.descriptors, table.descriptors, check_exact=True)
    assert list(pd.read_csv(tmp_path / "sub" / "clusters.csv").columns[:3]) == ["name", "cluster", "mean"]
    assert table.cluster_of("syn0_000003") == int(table.clusters[3])
    with pytest.raises(IrlibInputError, match="not in the cluster table"):
        table.ids(["nope"])
    with pytest.raises(IrlibInputError, match="not found"):
        ClusterTable.from_csv(tmp_path / "missing.csv")


def test_cluster_weights_are_normalised_per_batch() -> None:
    weights = ClusterWeights(6)
    ids = torch.tensor([0, 1, 1, 2, 5, 5, 5, 3])
    assert torch.allclose(weights(ids), torch.ones(8), atol=1e-5), "alpha = 0 gives equal weights"
    with torch.no_grad():
        weights.alpha.copy_(torch.tensor([3.0, -2.0, 0.5, 0.0, 9.0, -7.0]))
    for batch in (ids, torch.tensor([4, 5]), torch.tensor([0, 0, 2])):
        w = weights(batch)
        assert float(w.detach().mean()) == pytest.approx(1.0, abs=1e-5)
        assert float((w.max() / w.min()).detach()) <= 4.0 + 1e-5, "e^r lies in [0.5, 2]"
    w = weights(ids)
    a = weights.alpha.detach()[ids]
    r = math.log(2) * torch.tanh((a - a.mean()) / math.log(2))
    assert torch.allclose(w.detach(), r.exp() / r.exp().mean(), atol=1e-5), "the release's formula"
    assert w[1] == w[2] and w[4] == w[5] == w[6] and w[0] > w[3] > w[1]
    w.pow(2).sum().backward()
    grad = weights.alpha.grad
    assert bool((grad[[0, 1, 2, 3, 5]] != 0).all()) and grad[4] == 0, "only clusters in the batch learn"
    weights.alpha.grad = None
    out = weights(ids, detach=True)
    assert not out.requires_grad
    for bad in (torch.tensor([6]), torch.tensor([-1]), torch.tensor([[0]]), torch.tensor([0.5])):
        with pytest.raises(IrlibInputError, match="cluster"):
            weights(bad)


def test_weights_from_a_table(synthetic_descriptors: pd.DataFrame) -> None:
    table = cluster_descriptors(synthetic_descriptors, seed=1)
    weights = ClusterWeights.from_table(table)
    names = ["syn0_000000", "syn0_000007", "syn0_000012"]
    ids = table.ids(names)
    assert ids.dtype == torch.long and ids.tolist() == [table.cluster_of(n) for n in names]
    assert weights.alpha.shape == (table.num_clusters,) and weights(ids).shape == (3,)


@pytest.mark.realdata
@pytest.mark.slow
def test_cluster_table_on_nuaa_train(nuaa_root, tmp_path) -> None:
    ds = open_dataset(nuaa_root, split="train")
    table = cluster_dataset(ds, seed=1)
    n = len(ds)
    assert len(table) == n and table.names == list(ds.names)
    assert table.num_clusters == cluster_count(n) and set(table.clusters.tolist()) == set(range(table.num_clusters))
    assert np.isfinite(table.descriptors.to_numpy()).all()
    back = ClusterTable.from_csv(table.to_csv(tmp_path / "nuaa_clusters.csv"))
    assert np.array_equal(back.clusters, table.clusters) and back.names == table.names
