"""irlib.point: LESPS / PAL label evolution on hand-made arrays, the LESPS focal loss, PAL's
sample pool, EvolvingLabels and the evolution hook in a short fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from irlib.data.points import centroid_points
from irlib.data.synthetic import SyntheticSirst
from irlib.data.torchdata import SirstTorchDataset
from irlib.engine import Normalize, SupervisedObjective, fit
from irlib.engine.evaluate import iter_predictions
from irlib.errors import IrlibInputError
from irlib.point.labels import EvolutionHook, EvolvingLabels
from irlib.point.lesps import LespsRule, lesps_update
from irlib.point.losses import LespsFocalLoss
from irlib.point.pal import (PalRule, PalSchedule, admit, initial_mask, mine, pal_update, pool_selected,
                             refine)

H = W = 100   # 0.0015 * H * W = 15 px: the size term of a 1-px region is 1/15


def point_label(points, shape=(H, W)):
    lab = np.zeros(shape, np.float32)
    for r, c in points:
        lab[r, c] = 1.0
    return lab


def thr(mx, size, area=15.0):
    return mx * (0.5 + 0.5 * 0.5 * size / area)


# ----------------------------------------------------------------------------- LESPS rule
def test_lesps_threshold_grows_with_the_region_size():
    prob = np.zeros((H, W))
    prob[40:43, 40:45] = 0.9
    prob[41, 42] = 1.0
    prob[43, 41], prob[43, 42] = 0.74, 0.76            # just below / above thr = 0.75 for |R| = 15
    label = np.zeros((H, W), np.float32)
    label[40:43, 40:45] = 0.8
    label[41, 42] = 1.0
    assert thr(1.0, 15) == pytest.approx(0.75)
    out = lesps_update(prob, label, [(41, 42)])
    assert out.dtype == np.float32
    block = out[40:43, 40:45].copy()
    assert block[1, 2] == 1.0                           # the point
    block[1, 2] = 0.85
    np.testing.assert_allclose(block, 0.85, atol=1e-6)  # (0.8 + 0.9) / 2
    assert out[43, 42] == pytest.approx(0.38)           # (0 + 0.76) / 2
    assert out[43, 41] == 0.0                           # 0.74 < thr: untouched
    assert np.count_nonzero(out) == 16


def ring(center=(50, 50), r_in=3.0, r_out=5.0, shape=(H, W)):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    d = np.hypot(yy - center[0], xx - center[1])
    return (d >= r_in) & (d <= r_out)


def test_non_convex_target_with_centroid_outside():
    mask = ring()
    (pt,) = centroid_points(mask)
    assert tuple(pt) == (50, 50) and not mask[50, 50]   # the centroid point lies in the hole
    prob = 0.9 * mask
    first = lesps_update(prob, point_label([pt]), [pt])
    # LESPS code: the lone candidate component (the ring) is kept although it misses the 3x3 box
    np.testing.assert_allclose(first[mask], 0.45, atol=1e-6)
    assert first[50, 50] == 1.0 and np.count_nonzero(first) == mask.sum() + 1
    second = lesps_update(prob, first, [pt])             # 0.45 < 0.5: the ring is no region yet
    np.testing.assert_allclose(second[mask], 0.675, atol=1e-6)
    # PAL (and LESPS with filter_single) drop it: nothing grows
    assert np.count_nonzero(lesps_update(prob, point_label([pt]), [pt], filter_single=True)) == 1
    pal = pal_update(prob, point_label([pt]), [pt])
    assert np.count_nonzero(pal) == 1 and pal[50, 50] == 1.0
    # a tight ring (the 8 neighbours) misses the point but touches the 3x3 seed box: kept by both
    # rules next to a stray blob, which both drop
    tight = ring(r_in=1.0, r_out=1.5)
    (pt,) = centroid_points(tight)
    prob = 0.9 * tight
    prob[50, 60:62] = 0.9
    both = (lesps_update(prob, point_label([pt]), [pt]),
            pal_update(prob, point_label([pt]), [pt], quantize_to=None))
    for out in both:
        np.testing.assert_allclose(out[tight], 0.45, atol=1e-6)
        assert (out[50, 60:62] == 0).all() and out[50, 50] == 1.0


def test_stray_component_is_dropped_unless_alone():
    prob = np.zeros((H, W))
    prob[29:32, 29:32] = 0.9                             # the target around the point (30, 30)
    prob[30, 40:42] = 0.8                                # a stray blob inside the 33x33 window
    out = lesps_update(prob, point_label([(30, 30)]), [(30, 30)])
    assert (out[30, 40:42] == 0).all()                   # two components: the stray one goes
    assert out[29, 29] == pytest.approx(0.45) and out[30, 30] == 1.0
    alone = prob.copy()
    alone[29:32, 29:32] = 0.0
    kept = lesps_update(alone, point_label([(30, 30)]), [(30, 30)])
    np.testing.assert_allclose(kept[30, 40:42], 0.4, atol=1e-6)   # LESPS keeps a lone stray one
    dropped = pal_update(alone, point_label([(30, 30)]), [(30, 30)], quantize_to=None)
    assert (dropped[30, 40:42] == 0).all()               # PAL removes it
    for col, inside in ((46, True), (47, False)):        # the 33x33 window reaches 16 px
        far = np.zeros((H, W))
        far[30, col] = 0.8
        got = lesps_update(far, point_label([(30, 30)]), [(30, 30)])
        assert got[30, col] == pytest.approx(0.4 if inside else 0.0)


def test_two_nearby_targets():
    pts = [(50, 45), (50, 55)]                           # each target inside the other's window
    prob = np.zeros((H, W))
    prob[49:52, 44:47] = 0.9
    prob[49:52, 54:57] = 0.9
    out = lesps_update(prob, point_label(pts), pts)
    for r, c in pts:                                     # each blob averaged once, by its own point
        blob = out[r - 1:r + 2, c - 1:c + 2].copy()
        assert blob[1, 1] == 1.0
        blob[1, 1] = 0.45
        np.testing.assert_allclose(blob, 0.45, atol=1e-6)
    # touching targets whose candidates merge: LESPS averages the shared component once per
    # region, sequentially (0 -> 0.4 -> 0.6); PAL ORs the candidates and averages once
    bar = np.zeros((H, W))
    bar[49:52, 41:60] = 0.8
    seq = lesps_update(bar, point_label(pts), pts)
    assert seq[49, 50] == pytest.approx(0.6) and seq[50, 45] == 1.0
    once = pal_update(bar, point_label(pts), pts, quantize_to=None)
    assert once[49, 50] == pytest.approx(0.4)


def test_target_at_the_border():
    shape = (60, 90)                                     # size term 1 / (0.0015 * 5400) = 1 / 8.1
    prob = np.zeros(shape)
    prob[0:2, 0:3] = 0.9
    prob[58:60, 88:90] = 0.7
    prob[57, 86] = thr(0.7, 1, 8.1) - 1e-3               # just below the corner's threshold
    pts = [(0, 0), (59, 89)]
    out = lesps_update(prob, point_label(pts, shape), pts)
    np.testing.assert_allclose(out[0:2, 0:3].ravel()[1:], 0.45, atol=1e-6)
    assert out[0, 0] == 1.0 and out[59, 89] == 1.0
    np.testing.assert_allclose([out[58, 88], out[58, 89], out[59, 88]], 0.35, atol=1e-6)
    assert out[57, 86] == 0.0


def test_points_are_protected_and_exact_ones_kept():
    prob = np.zeros((H, W))
    prob[20:23, 20:23] = 0.5
    label = np.zeros((H, W), np.float32)
    label[21, 22] = 1.0                                  # a non-point pixel that is exactly 1
    label[21, 21] = 0.9
    out = lesps_update(prob, label, [(21, 21)])          # the point is not 1 in the given label
    assert out[21, 21] == 1.0
    assert out[21, 22] == 1.0                            # code: max(M, M_in == 1)
    strict = lesps_update(prob, label, [(21, 21)], keep_ones=False)
    assert strict[21, 22] == pytest.approx(0.75) and strict[21, 21] == 1.0
    # PAL: a 1 outside the candidates never decays (code), other pixels decay by 0.97
    lab = point_label([(21, 21)])
    lab[80, 80], lab[80, 82] = 1.0, 0.6
    pal = pal_update(np.zeros((H, W)), lab, [(21, 21)])
    assert pal[80, 80] == 1.0 and pal[80, 82] == pytest.approx(round(0.6 * 0.97 * 255) / 255)
    decayed = pal_update(np.zeros((H, W)), lab, [(21, 21)], keep_ones=False, quantize_to=None)
    assert decayed[80, 80] == pytest.approx(0.97) and decayed[21, 21] == 1.0


def test_labels_stay_soft_in_unit_interval():
    rng = np.random.default_rng(0)
    pts = [(10, 10), (40, 60), (90, 5)]
    lab_l = point_label(pts)
    lab_p = point_label(pts)
    for _ in range(6):
        prob = rng.random((H, W)) ** 4
        lab_l = lesps_update(prob, lab_l, pts)
        lab_p = pal_update(prob, lab_p, pts)
        for lab in (lab_l, lab_p):
            assert lab.dtype == np.float32 and lab.min() >= 0.0 and lab.max() <= 1.0
            assert all(lab[r, c] == 1.0 for r, c in pts)
    soft = lab_l[(lab_l > 0) & (lab_l < 1)]
    assert soft.size > 0                                 # genuinely soft values
    assert np.allclose(lab_p * 255, np.round(lab_p * 255), atol=1e-4)   # PAL: uint8 steps
    floor = lesps_update(np.full((H, W), 0.7), point_label([(5, 5)]), [(5, 5)], quantize_to="floor")
    assert floor[5, 6] == pytest.approx(89 / 255)        # floor(0.35 * 255) = 89


@pytest.mark.parametrize("bad", [
    dict(prob=np.full((10, 10), 1.5)),
    dict(prob=np.zeros((10, 11))),
    dict(points=[(10, 0)]),
    dict(window=32),
])
def test_bad_inputs_raise(bad):
    args = dict(prob=np.zeros((10, 10)), label=np.zeros((10, 10)), points=[(1, 1)])
    kw = {k: bad.pop(k) for k in list(bad) if k == "window"}
    args.update(bad)
    with pytest.raises(IrlibInputError):
        lesps_update(args["prob"], args["label"], args["points"], **kw)


def test_rules_match_functions():
    rng = np.random.default_rng(1)
    prob, pts = rng.random((40, 50)), [(20, 20)]
    lab = point_label(pts, (40, 50))
    np.testing.assert_array_equal(LespsRule(k=0.3)(prob, lab, pts), lesps_update(prob, lab, pts, k=0.3))
    np.testing.assert_array_equal(PalRule(decay=0.9)(prob, lab, pts), pal_update(prob, lab, pts, decay=0.9))


# ----------------------------------------------------------------------------- focal loss
def _focal_by_hand(x, t, alpha=2.0, gamma=4.0):
    total, ones = 0.0, 0
    for xi, ti in zip(x, t):
        p = 1.0 / (1.0 + math.exp(-xi))
        total += -math.log(p) * (1 - p) ** alpha * ti - math.log(1 - p) * p ** alpha * (1 - ti) ** gamma
        ones += ti == 1.0
    return total / max(ones, 1)


def test_focal_loss_against_hand_computation():
    x = [0.0, 2.0, -1.0, 3.0, -4.0, 0.5]
    t = [1.0, 0.5, 0.0, 0.25, 1.0, 0.0]
    logits = torch.tensor(x).reshape(1, 1, 2, 3)
    target = torch.tensor(t).reshape(1, 1, 2, 3)
    loss = LespsFocalLoss()
    expect = _focal_by_hand(x, t)
    assert float(loss(logits, target)) == pytest.approx(expect, rel=1e-6)
    assert float(loss([logits, logits], target)) == pytest.approx(2 * expect, rel=1e-6)   # LESPS sums
    assert float(LespsFocalLoss(deep="mean")([logits, logits], target)) == pytest.approx(expect, rel=1e-6)
    no_ones = [0.0, 0.5, 0.0, 0.25, 0.9, 0.0]            # no pixel at 1: divided by 1
    assert float(loss(logits, torch.tensor(no_ones).reshape(1, 1, 2, 3))) == pytest.approx(
        _focal_by_hand(x, no_ones), rel=1e-6)
    with pytest.raises(IrlibInputError):
        loss(logits, target * 2)


# ----------------------------------------------------------------------------- PAL pool
def test_pal_schedule():
    pal = PalSchedule(400)
    assert not pal.updates(80) and pal.updates(85) and not pal.updates(86)
    assert pal.mines(320) and not pal.mines(325) and pal.updates(325)
    assert pal.lose_ratio(85) == pytest.approx(0.2 + 6 / 240 * 0.8)
    sp = PalSchedule.semantic_prior(300)
    assert not sp.updates(60) and sp.updates(65) and sp.mines(240) and not sp.mines(245)
    assert sp.lose_ratio(65) == pytest.approx(0.2 + 6 / 180 * 0.8)
    assert sp.lose_ratio(240) == pytest.approx(0.2 + 181 / 180 * 0.8)   # easy to hard: about 1
    assert [sp.lose_ratio(e) for e in (70, 120, 200)] == sorted(sp.lose_ratio(e) for e in (70, 120, 200))
    with pytest.raises(IrlibInputError):
        PalSchedule(100, start=90)


def test_pal_admission_and_refinement():
    pts = np.array([(10, 10), (50, 50), (80, 80)])
    pred = np.zeros((H, W), bool)
    pred[9:12, 9:12] = True                              # covers point 1
    pred[48:53, 48:53] = ring((50, 50), 1.5, 2.5)[48:53, 48:53]   # a ring around point 2: hole filled
    pred[30:33, 70:73] = True                            # a false alarm; point 3 is missed
    assert not pred[50, 50]
    assert not admit(pred, pts, lose_ratio=0.3)          # 1/3 uncovered > 0.3
    assert admit(pred, pts, lose_ratio=0.34)
    assert not admit(pred, pts, lose_ratio=1.0, alarm_ratio=0.3)   # (3 comps - 2 covered) / 3 > 0.3
    assert admit(pred, np.zeros((0, 2), int), lose_ratio=0.0)     # no point: admitted
    lab = refine(pred, pts)
    assert lab[50, 50] and lab[80, 80] and lab[9:12, 9:12].all()
    assert not lab[30:33, 70:73].any()                   # the false alarm is removed
    got = mine(pred.astype(float) * 0.9, pts, lose_ratio=0.34)
    np.testing.assert_array_equal(got, lab)
    assert mine(pred.astype(float) * 0.9, pts, lose_ratio=0.3) is None
    assert pool_selected([True] * 4 + [False]) and not pool_selected([True, False])
    assert pool_selected([])


def test_pal_initial_mask():
    img = np.full((64, 64), 0.2)
    img[30:34, 30:34] = 0.8                              # a small target around the point
    img[5:45, 50:64] = 0.9                               # a large bright region (no closed edge near (25, 58))
    init = initial_mask(img, [(31, 31), (25, 58)])
    assert init.covered.tolist() == [True, False]
    assert not init.selected                             # 1 of 2 points < 80 %
    m = init.mask
    assert m[30:34, 30:34].all() and m[25, 58]
    assert m[:, :48].sum() <= 50 and not m[:27, :48].any() and not m[37:, :48].any()
    flat = initial_mask(np.full((40, 40), 0.3), [(20, 20)])
    assert not flat.covered.any() and flat.mask.sum() == 1
    small = initial_mask(img, [(31, 31)], max_area=3)    # the contour is larger than 3 px
    assert not small.covered[0]


# ----------------------------------------------------------------------------- EvolvingLabels
def _tiny_labels(**kw):
    masks = [np.zeros((20, 20), bool), np.zeros((20, 20), bool)]
    masks[0][5:8, 5:8] = True
    masks[1][10:12, 2:6] = True
    images = [m * 0.8 + 0.1 for m in masks]
    points = [np.array([(6, 6)]), np.array([(0, 0)])]   # image 1's point misses its target
    return EvolvingLabels(["a", "b"], images, points, masks=masks, **kw)


def test_evolving_labels_history_snapshots_and_iou():
    labels = _tiny_labels(keep_snapshots=2)
    assert labels.pseudo_iou() == pytest.approx(1 / (9 + 8 + 1))        # one point hits
    new = labels.label(0)
    new[5:8, 5:8] = 0.6
    labels.set_label(0, new)
    rec = labels.record(epoch=5)
    assert rec.step == 1 and rec.epoch == 5 and rec.iou == pytest.approx(9 / (9 + 8 + 1))
    assert rec.foreground == 10
    np.testing.assert_allclose(labels.snapshot(1).labels[0], np.round(new * 255) / 255)
    np.testing.assert_array_equal(labels.snapshot(0).labels[0], point_label([(6, 6)], (20, 20)))
    for e in (10, 15):
        labels.record(epoch=e)
    assert labels.snapshot_steps == [0, 2, 3]            # the initial one and the 2 most recent
    assert [r.epoch for r in labels.history] == [0, 5, 10, 15]
    with pytest.raises(IrlibInputError):
        labels.snapshot(1)
    assert labels.pseudo_iou(threshold=0.7) == 0.0                    # 0.6 < 0.7; (0, 0) misses
    no_masks = EvolvingLabels(["a"], [np.zeros((8, 8))], [np.array([(1, 1)])])
    assert no_masks.pseudo_iou() is None and no_masks.history[0].iou is None
    state = labels.state_dict()
    other = _tiny_labels(keep_snapshots=2)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.label(0), labels.label(0))
    assert other.history == labels.history and other.snapshot_steps == [0, 2, 3]


def test_training_view_targets_and_pool_substitution():
    labels = _tiny_labels(active=[True, False], target="binary")
    view = labels.training_view()
    assert len(view) == 2 and view[1].name == "a"        # outside the pool: served as a pool image
    lab = labels.label(1)
    lab[10:12, 2:6] = 0.75
    labels.admit(1, lab)
    s = view[1]
    assert s.name == "b" and s.mask.dtype == bool and s.mask.sum() == 9   # target and point
    soft = _tiny_labels()
    soft.set_label(0, np.full((20, 20), 0.25, np.float32))
    item = SirstTorchDataset(soft.training_view(), train=False)[0]
    assert torch.allclose(item["mask"], torch.full((1, 20, 20), 0.25))
    with pytest.raises(IrlibInputError):
        _tiny_labels(active=[False, False]).training_view()[0]
    with pytest.raises(IrlibInputError):
        soft.set_label(0, np.full((20, 20), 2.0))


def test_from_dataset_points_and_pal_init():
    ds = SyntheticSirst(6, size=64, seed=2, empty_fraction=0.0)
    lab = EvolvingLabels.from_dataset(ds)
    for i in range(len(ds)):
        np.testing.assert_array_equal(lab.points(i), centroid_points(ds[i].mask))
        assert lab.label(i).sum() == len(lab.points(i))
    coarse_a = EvolvingLabels.from_dataset(ds, "coarse", seed=4)
    coarse_b = EvolvingLabels.from_dataset(ds, "coarse", seed=4)
    for i in range(len(ds)):                             # seeded; inside the targets
        np.testing.assert_array_equal(coarse_a.points(i), coarse_b.points(i))
        assert all(ds[i].mask[r, c] for r, c in coarse_a.points(i))
    pal = EvolvingLabels.from_dataset(ds, initial="pal")
    assert pal.target_kind == "binary"
    for i in range(len(ds)):
        init = initial_mask(ds[i].image, pal.points(i))
        np.testing.assert_array_equal(pal.label(i) > 0, init.mask)
        assert pal.active[i] == init.selected
    with pytest.raises(IrlibInputError):
        EvolvingLabels.from_dataset(ds, points="middle")


# ----------------------------------------------------------------------------- the hook
class FixedNet(nn.Module):
    """A frozen top-hat filter (logits); a zero dummy parameter so ``fit`` has something to train
    while the predictions stay fixed."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 5, padding=2)
        k = -torch.ones(5, 5) / 25
        k[2, 2] += 1.0
        with torch.no_grad():
            self.conv.weight.copy_(40.0 * k[None, None])
            self.conv.bias.fill_(-2.0)
        self.conv.requires_grad_(False)
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + 0.0 * self.dummy


def test_hook_schedule():
    labels = _tiny_labels()
    norm = Normalize.identity()
    lesps = EvolutionHook.lesps(labels, norm)
    assert [lesps.due(e, loss) for e, loss in [(1, 12.0), (2, 10.0), (3, 9.0), (4, 11.0), (5, 8.0), (6, 7.0)]] \
        == [False, False, True, False, True, False]
    pal = EvolutionHook.pal(labels, norm, PalSchedule(400))
    assert [e for e in range(1, 101) if pal.due(e, None)] == [85, 90, 95, 100]


def _predictions(model, labels, norm):
    items = [{"image": labels.image(i), "name": labels.names[i]} for i in range(len(labels))]
    return [p for _, p, _ in iter_predictions(model, items, norm, "cpu")]


@pytest.mark.parametrize("method", ["lesps", "pal"])
def test_hook_in_fit(method):
    ds = SyntheticSirst(4, size=(50, 70), seed=3, empty_fraction=0.0)   # not multiples of 32
    norm = Normalize(0.3, 0.2)
    labels = EvolvingLabels.from_dataset(ds, initial="points" if method == "lesps" else "pal")
    before = [labels.label(i) for i in range(len(labels))]
    was_active = labels.active
    if method == "lesps":
        hook = EvolutionHook.lesps(labels, norm, every=1, start_loss=None)
        objective = SupervisedObjective(LespsFocalLoss(), norm)
    else:
        hook = EvolutionHook.pal(labels, norm, PalSchedule(2, start=0, every=1))
        objective = SupervisedObjective("bce", norm)
    model = FixedNet()
    train = SirstTorchDataset(labels.training_view(), train=True, crop_size=32, seed=0)
    hist = fit(model, train, epochs=2, batch_size=2, normalize=norm, objective=objective, device="cpu",
               seed=0, hooks=[hook], progress=False)
    assert [r.get("label_step") for r in hist.rows] == [1, None]        # never after the last epoch
    assert [r.epoch for r in labels.history] == [0, 1]
    assert hist.rows[0]["label_iou"] == pytest.approx(labels.history[1].iou)
    assert model.training                                # the hook gave the model back in train mode
    probs = _predictions(model, labels, norm)
    rule = LespsRule() if method == "lesps" else PalRule()
    lose = PalSchedule(2, start=0, every=1).lose_ratio(1)
    admitted = 0
    for i, prob in enumerate(probs):
        if was_active[i]:
            expect = rule(prob, before[i], labels.points(i))
        else:
            got = mine(prob, labels.points(i), lose)
            admitted += got is not None
            expect = before[i] if got is None else got.astype(np.float32)
        np.testing.assert_array_equal(labels.label(i), expect)
        assert all(labels.label(i)[r, c] == 1.0 for r, c in labels.points(i))
    assert labels.history[1].admitted == admitted == hist.rows[0]["label_admitted"]
    assert labels.history[1].active == int(was_active.sum()) + admitted
    np.testing.assert_allclose(labels.snapshot(1).labels[0], np.round(labels.label(0) * 255) / 255, atol=1e-7)
