"""Bilevel teacher/student distillation (irlib.point.bilevel) and the point-supervision study runner."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from irlib.data import SyntheticSirst
from irlib.data.points import centroid_points
from irlib.data.sample import Sample
from irlib.data.torchdata import SirstTorchDataset
from irlib.engine import Hook, Normalize, fit
from irlib.errors import IrlibInputError
from irlib.models import create_model, load_host, read_host_meta
from irlib.point import study as ps
from irlib.point.bilevel import (BilevelObjective, OuterLoop, TeacherForward, alpha_of, bce_per_image, hypergradient,
                                 kd_per_image, natural_key, point_label_split, validation_labels, validation_split)
from irlib.point.clusters import ClusterTable, ClusterWeights
from irlib.point.losses import LespsFocalLoss
from irlib.point.pal import initial_mask
from irlib.point.scam import GATE_L1_WEIGHT, SCAM, ScamTeacher
from irlib.vfm import FrozenEncoder, create_encoder

NORM = Normalize(0.3, 0.2)


def _samples(n: int = 8, size: int = 48, seed: int = 0) -> list[Sample]:
    ds = SyntheticSirst(n, size=size, seed=seed, empty_fraction=0.0)
    return [ds[i] for i in range(n)]


def _table(names, k: int = 2) -> ClusterTable:
    return ClusterTable(list(names), np.arange(len(names)) % k, pd.DataFrame(index=range(len(names))), k)


def _teacher(seed: int = 0) -> ScamTeacher:
    torch.manual_seed(seed)
    return ScamTeacher(create_model("acm"), create_encoder("tiny_cnn_random", seed=seed))


def _setup(epochs_every: int = 2, steps: int = 1, seed: int = 0):
    samples = _samples()
    train_labels, val_labels = point_label_split(samples, 0.25)
    table = _table([s.name for s in samples])
    weights = ClusterWeights.from_table(table)
    teacher = _teacher(seed)
    train = SirstTorchDataset(train_labels.training_view(), train=True, crop_size=32, seed=seed)
    val = SirstTorchDataset(val_labels.training_view(), train=True, crop_size=32, seed=seed)
    outer = OuterLoop(teacher, weights, table, train, val, NORM, every=epochs_every, steps=steps, batch_size=4,
                      lr=1e-2, eta=1e-3, seed=seed)
    return teacher, weights, table, train, val, outer, BilevelObjective(NORM, table, weights)


# ----------------------------------------------------------------------------- cluster weights
class AlphaLog(Hook):
    def __init__(self, weights: ClusterWeights) -> None:
        self.weights, self.start, self.end = weights, [], []

    def on_epoch_start(self, ctx) -> None:
        self.start.append(alpha_of(self.weights))

    def on_epoch_end(self, ctx) -> None:
        self.end.append(alpha_of(self.weights))


def test_cluster_weights_change_only_in_the_outer_step():
    teacher, weights, table, train, _, outer, objective = _setup(epochs_every=2, steps=1)
    seen: list[tuple[int, np.ndarray]] = []
    epoch = {"now": 0}

    def spy(model, batch):
        seen.append((epoch["now"], alpha_of(weights)))
        loss, logs = objective(model, batch)
        return loss, logs

    class EpochOf(Hook):
        def on_epoch_start(self, ctx) -> None:
            epoch["now"] = ctx.epoch

    log = AlphaLog(weights)
    hist = fit(teacher, train, epochs=4, batch_size=2, normalize=NORM, objective=spy, device="cpu", seed=0,
               hooks=[EpochOf(), log, outer], progress=False)
    assert weights.alpha.grad is None, "the inner loss must not reach alpha"
    # inner steps: alpha is the epoch's starting alpha at every step, and still at the epoch's end
    for e, a in seen:
        np.testing.assert_array_equal(a, log.start[e])
    for e in range(4):
        np.testing.assert_array_equal(log.end[e], log.start[e])
    # outer rounds after epochs 0 and 2 (0-based), none after epoch 1 and none after the last one
    assert [outer.due(e, 4) for e in range(4)] == [True, False, True, False]
    assert not np.array_equal(log.start[1], log.end[0])
    np.testing.assert_array_equal(log.start[2], log.end[1])
    assert not np.array_equal(log.start[3], log.end[2])
    assert np.abs(alpha_of(weights)).max() > 0 and outer.done == 2
    assert [r.get("outer_steps") for r in hist.rows] == [1, None, 2, None]


def test_inner_step_alone_leaves_alpha_and_outer_step_moves_it():
    teacher, weights, _, train, _, outer, objective = _setup()
    opt = torch.optim.AdamW([p for p in teacher.parameters() if p.requires_grad], lr=1e-2)
    batch = torch.utils.data.default_collate([train[i] for i in range(4)])
    before = alpha_of(weights)
    loss, _ = objective(teacher, batch)
    loss.backward()
    opt.step()
    assert weights.alpha.grad is None
    np.testing.assert_array_equal(alpha_of(weights), before)
    outer.step(0, 0)
    assert not np.array_equal(alpha_of(weights), before)


# ----------------------------------------------------------------------------- VFM and export
def test_vfm_gets_no_gradient_and_stays_fixed():
    teacher, weights, _, train, _, outer, objective = _setup()
    enc_before = {k: v.clone() for k, v in teacher.encoder.state_dict().items()}
    fit(teacher, train, epochs=2, batch_size=2, normalize=NORM, objective=objective, device="cpu", seed=0,
        hooks=[outer], progress=False)
    assert outer.done == 1
    assert all(not p.requires_grad and p.grad is None for p in teacher.encoder.parameters())
    for k, v in teacher.encoder.state_dict().items():
        assert torch.equal(v, enc_before[k]), f"frozen VFM tensor {k} changed"
    assert not any(p is q for p in teacher.encoder.parameters() for g in outer.optimizer.param_groups
                   for q in g["params"])


def test_exported_student_equals_the_host():
    teacher, _, _, train, _, outer, objective = _setup()
    fit(teacher, train, epochs=2, batch_size=2, normalize=NORM, objective=objective, device="cpu", seed=0,
        hooks=[outer], progress=False)
    student = teacher.export_student()
    assert student is not teacher.host and not student.training
    assert not any(isinstance(m, (SCAM, FrozenEncoder, ScamTeacher)) for m in student.modules())
    assert set(student.state_dict()) == set(teacher.host.state_dict())
    for k, v in student.state_dict().items():
        assert torch.equal(v, teacher.host.state_dict()[k])
    x = NORM(torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1)))
    teacher.eval()
    with torch.no_grad():
        assert torch.equal(student(x), teacher.host(x))
        assert not torch.equal(student(x), TeacherForward(teacher, NORM)(x)), "SCAM must change the teacher"


# ----------------------------------------------------------------------------- the objective's terms
def test_objective_terms_on_a_tiny_case():
    teacher = _teacher().train()
    names = ["a", "b", "c"]
    table = _table(names, k=3)
    weights = ClusterWeights.from_table(table)
    with torch.no_grad():
        weights.alpha.copy_(torch.tensor([0.5, -0.3, 0.1]))
        teacher.scam.gate.mul_(0.5)
    g = torch.Generator().manual_seed(0)
    raw = torch.rand(3, 1, 32, 32, generator=g)
    mask = (torch.rand(3, 1, 32, 32, generator=g) > 0.9).float()
    batch = {"image": raw, "mask": mask, "name": names}
    objective = BilevelObjective(NORM, table, weights)
    torch.manual_seed(5)                       # the head's dropout draws the same masks in both passes
    loss, logs = objective(teacher, batch)
    # by hand, with the same forward passes (teacher first, then the student under no_grad)
    torch.manual_seed(5)
    x = NORM(raw)
    with torch.no_grad():
        t = teacher(raw, x)
        s = teacher.student(x)
    bce = F.binary_cross_entropy_with_logits(t, mask, reduction="none").mean((1, 2, 3))
    mse = ((torch.sigmoid(s / 4) - torch.sigmoid(t / 4)) ** 2).mean((1, 2, 3))
    r = torch.tensor([0.5, -0.3, 0.1]) - 0.1
    w = torch.exp(math.log(2) * torch.tanh(r / math.log(2)))
    w = w / (w.mean() + 1e-6)
    expect = (w * (bce + 0.1 * mse)).mean() + GATE_L1_WEIGHT * 0.5
    assert float(loss.detach()) == pytest.approx(float(expect), rel=1e-5)
    assert logs["pseudo"] == pytest.approx(float(bce.mean()), rel=1e-5)
    assert logs["align"] == pytest.approx(float(mse.mean()), rel=1e-5)
    assert logs["gate"] == pytest.approx(0.5)
    loss.backward()
    assert weights.alpha.grad is None
    assert teacher.scam.gate.grad is not None and float(teacher.scam.gate.grad.abs().sum()) > 0
    # focal: per-image terms average to LESPS's loss
    focal = LespsFocalLoss()
    assert float(focal.per_image([t, 2 * t], mask).mean()) == pytest.approx(float(focal([t, 2 * t], mask)), rel=1e-5)
    with pytest.raises(IrlibInputError, match="ScamTeacher"):
        objective(teacher.host, batch)
    with pytest.raises(IrlibInputError, match="pseudo_loss"):
        BilevelObjective(NORM, table, weights, pseudo_loss="dice")


def test_alignment_direction():
    s = torch.randn(2, 1, 8, 8, requires_grad=True)
    t = torch.randn(2, 1, 8, 8, requires_grad=True)
    kd_per_image(s, t.detach()).sum().backward()          # the student learns from the teacher
    assert s.grad is not None and t.grad is None
    s.grad = None
    kd_per_image(s.detach(), t, kind="bce", target="student").sum().backward()
    assert t.grad is not None and s.grad is None
    assert torch.allclose(bce_per_image([t, t], torch.zeros_like(t)), bce_per_image(t, torch.zeros_like(t)))


def test_first_order_hypergradient_formula():
    theta = [torch.tensor([1.0, 2.0], requires_grad=True)]
    alpha = torch.tensor([0.5], requires_grad=True)
    f_val = (theta[0] ** 2).sum() * alpha[0]            # grad_theta = 2 theta alpha, grad_alpha = |theta|^2
    f_tr = (theta[0] * torch.tensor([3.0, -1.0])).sum() + 2 * alpha[0] ** 2
    grads, c = hypergradient(f_val, f_tr, theta, alpha, eta=0.1)
    g_val_t, g_val_a = torch.tensor([1.0, 2.0]), torch.tensor([5.0])
    g_tr_t, g_tr_a = torch.tensor([3.0, -1.0]), torch.tensor([2.0])
    expect_c = float((g_val_t * g_tr_t).sum() / (g_tr_t ** 2).sum())
    assert c == pytest.approx(expect_c)
    assert torch.allclose(grads[0], g_val_t + 0.1 * expect_c * g_tr_t)
    assert torch.allclose(grads[1], g_val_a + 0.1 * expect_c * g_tr_a)
    f_val = (theta[0] ** 2).sum() * alpha[0]
    f_tr = (theta[0] * torch.tensor([3.0, -1.0])).sum() + 2 * alpha[0] ** 2
    plain, c0 = hypergradient(f_val, f_tr, theta, alpha, eta=0.1, mode="validation")
    assert c0 == 0.0 and torch.allclose(plain[0], g_val_t) and torch.allclose(plain[1], g_val_a)
    with pytest.raises(IrlibInputError, match="hypergradient"):
        hypergradient(f_val, f_tr, theta, alpha, 0.1, mode="second_order")


# ----------------------------------------------------------------------------- validation split
def test_validation_split_takes_the_natural_tail():
    names = [f"Misc_{i}" for i in (3, 12, 1, 9, 10, 2, 11, 4)]
    train, val = validation_split(names, 0.25, "tail")
    assert [names[i] for i in val] == ["Misc_12", "Misc_11"]
    assert sorted(train + val) == list(range(8)) and not set(train) & set(val)
    assert natural_key("Misc_9") < natural_key("Misc_10")
    r1, r2 = validation_split(names, 0.25, "random", seed=1), validation_split(names, 0.25, "random", seed=1)
    assert r1 == r2 and len(r1[1]) == 2
    with pytest.raises(IrlibInputError):
        validation_split(names, 0.0)


def test_validation_split_never_uses_ground_truth_masks():
    samples = _samples(8)
    train_labels, val_labels = point_label_split(samples, 0.25)
    assert len(val_labels) == 2 and len(train_labels) == 6 and val_labels.active.all()
    by_name = {s.name: s for s in samples}
    differs = 0
    for i, name in enumerate(val_labels.names):
        s = by_name[name]
        pts = centroid_points(s.mask)
        np.testing.assert_array_equal(val_labels.points(i), pts)
        np.testing.assert_array_equal(val_labels.target(i), initial_mask(s.image, pts).mask)
        differs += not np.array_equal(val_labels.target(i), s.mask)
    assert differs > 0, "pseudo-masks from points should not equal the real masks"
    # the same points with the real masks replaced: identical targets (masks are never read for them)
    val_samples = [by_name[n] for n in val_labels.names]
    blanked = [Sample(s.name, s.image, np.ones_like(s.mask)) for s in val_samples]
    again = validation_labels(blanked, [val_labels.points(i) for i in range(len(val_labels))], keep_masks=False)
    assert again.mask(0) is None and again.pseudo_iou() is None
    for i in range(len(again)):
        np.testing.assert_array_equal(again.target(i), val_labels.target(i))
    # what the outer step reads: the pseudo-masks
    view = SirstTorchDataset(val_labels.training_view(), train=False)
    for i in range(len(view)):
        np.testing.assert_array_equal(view[i]["mask"][0].numpy() > 0.5, val_labels.target(i))


# ----------------------------------------------------------------------------- study runner
def test_smoke_study_gives_one_row_per_arm_host_and_seed(tmp_path):
    cfg = ps.make_config("smoke")
    study = ps.run_study(cfg)
    table = study.table
    expected = {(h, a, s) for h in cfg.hosts for a in ps.ARMS for s in cfg.seeds}
    assert len(table) == len(expected) == 10
    assert set(zip(table["host"], table["arm"], table["seed"])) == expected
    ours = table[table["arm"].isin(["ours_teacher", "ours_student"])]
    assert ours["encoder_is_stand_in"].all() and (ours["encoder"] == "tiny_cnn_random").all()
    assert "STAND-IN" in ps.study_title(study)
    for host in cfg.hosts:
        rows = table[table["host"] == host].set_index("arm")
        assert rows.loc["ours_student", "params"] == rows.loc["full_mask", "params"]
        assert rows.loc["ours_teacher", "params"] > rows.loc["ours_student", "params"]
        assert rows.loc["full_mask", "pseudo_iou"] is None or pd.isna(rows.loc["full_mask", "pseudo_iou"])
        assert all(0 <= rows.loc[a, "pseudo_iou"] <= 1 for a in ("lesps", "pal", "ours_student"))
    assert table[["IoU", "nIoU", "Pd", "train_time_s"]].notna().all().all()
    student = next(r for r in study.runs if r.row["arm"] == "ours_student")
    assert isinstance(student.deployed, type(create_model("acm"))) and not hasattr(student.deployed, "scam")
    paths = ps.write_results(study, tmp_path)
    for key in ("csv", "json", "clusters", "label_curves", "eval_curves"):
        assert paths[key].is_file(), key
    assert len(pd.read_csv(paths["csv"])) == 10
    assert set(pd.read_csv(paths["clusters"])["name"]) == set(study.images)
    curves = study.eval_curves
    assert set(curves["arm"]) == set(ps.ARMS) and len(curves) == 10 * cfg.training_recipe().epochs
    # deployed hosts saved with their normalisation: 4 per host and seed (not the teacher), reloadable
    saved = ps.write_results(study, tmp_path / "w", weights=True)
    files = sorted(p.name for k, p in saved.items() if k.startswith("weights_"))
    assert len(files) == 8 and not any("ours_teacher" in f for f in files)
    path = saved[f"weights_{ps.results_stem(cfg)}_acm_ours_student_seed{cfg.seeds[0]}"]
    reloaded = load_host(path).eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), student.deployed.eval()(x))
    assert read_host_meta(path)["normalize"] == study.normalize.to_dict()
    with pytest.raises(IrlibInputError, match="arms"):
        ps.make_config("smoke", arms=["ours"])


def test_bilevel_training_is_deterministic_by_seed():
    def once():
        teacher, weights, _, train, _, outer, objective = _setup(epochs_every=1, steps=1, seed=3)
        fit(teacher, train, epochs=2, batch_size=2, normalize=NORM, objective=objective, device="cpu", seed=3,
            hooks=[outer], progress=False)
        return alpha_of(weights), {k: v.clone() for k, v in teacher.state_dict().items()}

    (a1, s1), (a2, s2) = once(), once()
    np.testing.assert_array_equal(a1, a2)
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
