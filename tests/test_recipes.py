"""Named recipes, epoch-based schedules, the BasicIRSTD crop sampler and the loop's options."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from irlib.data.transforms import JointAugment, random_crop
from irlib.engine import Normalize, fit
from irlib.engine.init import apply_head_prior, output_layers
from irlib.engine.recipes import RECIPES, Recipe, get_recipe
from irlib.engine.schedule import build_optimizer, build_scheduler, parameter_groups
from irlib.engine.trainer import Hook, epoch_batches
from irlib.errors import IrlibInputError
from tests.test_engine import NORM, ToyDataset, toy_net


def lrs_per_epoch(recipe: Recipe, steps_per_epoch: int, epochs: int) -> list[list[float]]:
    """The lr used by every optimiser step, grouped by epoch."""
    model = nn.Linear(2, 1)
    opt = build_optimizer(model, recipe)
    sched = build_scheduler(opt, recipe, steps_per_epoch)
    out = []
    for _ in range(epochs):
        row = []
        for _ in range(steps_per_epoch):
            row.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        out.append(row)
    return out


def test_basicirstd_recipe_is_adam_multistep_per_epoch() -> None:
    r = RECIPES["basicirstd"]
    opt = build_optimizer(nn.Linear(2, 1), r)
    assert type(opt) is torch.optim.Adam and opt.param_groups[0]["weight_decay"] == 0
    assert (r.epochs, r.batch_size, r.crop_size, r.pos_prob, r.pad, r.normalization, r.loss) == \
        (400, 16, 256, 0.5, "mean", "reference", "softiou")
    assert not r.drop_last and r.skip_singleton_batch and r.deviations == {}
    lrs = lrs_per_epoch(r, 14, 400)
    assert all(len(set(e)) == 1 for e in lrs)  # constant within an epoch
    got = {e: lrs[e][0] for e in (0, 199, 200, 299, 300, 399)}
    assert got == pytest.approx({0: 5e-4, 199: 5e-4, 200: 5e-5, 299: 5e-5, 300: 5e-6, 399: 5e-6})
    # the same lrs as PyTorch's MultiStepLR stepped once per epoch (BasicIRSTD's train.py)
    opt = torch.optim.Adam(nn.Linear(2, 1).parameters(), lr=5e-4)
    ref = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[200, 300], gamma=0.1)
    expected = []
    for _ in range(400):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert [e[0] for e in lrs] == pytest.approx(expected, rel=1e-12)


def test_dnanet_recipe_is_adagrad_cosine_per_epoch() -> None:
    r = get_recipe("dnanet", epochs=30)
    opt = torch.optim.Adagrad(nn.Linear(2, 1).parameters(), lr=0.05)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=30, eta_min=1e-5)
    expected = []
    for _ in range(30):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    assert type(build_optimizer(nn.Linear(2, 1), r)) is torch.optim.Adagrad
    assert [e[0] for e in lrs_per_epoch(r, 3, 30)] == pytest.approx(expected, rel=1e-9)


def test_fdep_and_demo_recipes() -> None:
    fdep = build_optimizer(nn.Linear(2, 1), RECIPES["fdep_authors"])
    assert type(fdep) is torch.optim.AdamW and fdep.param_groups[0]["lr"] == 1e-3
    assert RECIPES["fdep_authors"].amp and RECIPES["fdep_authors"].loss == "edge_bce_ohem"
    lrs = lrs_per_epoch(RECIPES["cpu_demo"], 5, 20)
    assert {x for e in lrs for x in e} == {1e-3}


def test_cosine_with_warmup_per_step() -> None:
    r = Recipe(optimizer="sgd", lr=1.0, schedule="cosine", warmup_epochs=2, warmup_start=0.0, epochs=10)
    lrs = [x for e in lrs_per_epoch(r, 4, 10) for x in e]
    assert lrs[0] == pytest.approx(0.0) and lrs[4] == pytest.approx(0.5)        # linear warm-up
    assert lrs[8] == pytest.approx(1.0)                                          # end of warm-up
    assert lrs[8 + 16] == pytest.approx(0.5)                                     # half way down
    assert all(a >= b for a, b in zip(lrs[8:], lrs[9:]))                         # then decreasing
    poly = [e[0] for e in lrs_per_epoch(Recipe(lr=1.0, schedule="poly", epochs=4, step_per="epoch"), 2, 4)]
    assert poly == pytest.approx([1.0, 0.75 ** 0.9, 0.5 ** 0.9, 0.25 ** 0.9])


def test_parameter_groups_leave_norms_biases_and_embeddings_undecayed() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.bn = nn.BatchNorm2d(4)
            self.query_embed = nn.Parameter(torch.zeros(8, 4, 4))

    groups = parameter_groups(Net(), 0.1, no_decay_norm_bias=True)
    decayed = {id(p) for p in groups[0]["params"]}
    net = Net()
    groups = parameter_groups(net, 0.1, no_decay_norm_bias=True)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert [p.shape for p in groups[0]["params"]] == [net.conv.weight.shape]
    assert len(groups[1]["params"]) == 4  # conv bias, bn weight and bias, query_embed
    assert decayed  # (a fresh model gives the same split)
    assert len(parameter_groups(net, 0.1, no_decay_norm_bias=False)) == 1


def test_recipe_replace_and_errors() -> None:
    r = get_recipe("basicirstd", epochs=10, head_prior=0.01)
    assert r.epochs == 10 and r.deviations == {"head_prior": 0.01} and r.name == "basicirstd"
    assert Recipe.from_dict(r.to_dict()) == r
    with pytest.raises(IrlibInputError, match="unknown recipe fields"):
        r.replace(epoch=3)
    with pytest.raises(IrlibInputError, match="unknown recipe"):
        get_recipe("mmseg")
    with pytest.raises(IrlibInputError, match="optimizer"):
        Recipe(optimizer="lion")


# ----------------------------------------------------------------------------- crop sampler
def test_target_biased_crop_share_follows_the_rejection_rule() -> None:
    """BasicIRSTD's loop draws a crop and a coin each time: a crop without target survives with
    probability 1/2, so the target share is 2P / (1 + P) for a uniform-crop hit rate P."""
    size, crop = 128, 32
    mask = np.zeros((size, size), np.float32)
    mask[60:62, 60:62] = 1
    image = np.random.default_rng(0).random((size, size)).astype(np.float32)
    offsets = size - crop + 1
    hits = sum(1 for t in range(offsets) for l in range(offsets) if mask[t:t + crop, l:l + crop].any())
    p = hits / offsets ** 2
    n = 4000
    share = np.mean([random_crop([image, mask], crop, np.random.default_rng(i), pos_prob=0.5)[1].any()
                     for i in range(n)])
    uniform = np.mean([random_crop([image, mask], crop, np.random.default_rng(i))[1].any() for i in range(n)])
    assert uniform == pytest.approx(p, abs=0.025)
    assert share == pytest.approx(2 * p / (1 + p), abs=0.03)
    # pos_prob 1: always a target; an image without a target accepts its first draw
    assert all(random_crop([image, mask], crop, np.random.default_rng(i), pos_prob=1.0)[1].any() for i in range(50))
    empty = np.zeros_like(mask)
    assert random_crop([image, empty], crop, np.random.default_rng(0), pos_prob=1.0)[0].shape == (crop, crop)


def test_crop_pads_image_with_its_value_and_masks_with_zero() -> None:
    image = np.full((20, 30), 0.9, np.float32)
    mask = np.ones((20, 30), np.float32)
    norm = Normalize(0.4, 0.1)
    aug = JointAugment(64, hflip=False, vflip=False, transpose=False, image_pad=0.4)
    img, msk = aug(np.random.default_rng(0), image, mask)
    assert img.shape == msk.shape == (64, 64)
    assert np.all(img[20:, :] == np.float32(0.4)) and np.all(img[:, 30:] == np.float32(0.4))
    assert msk[20:, :].sum() == 0 and msk[:20, :30].all()
    # after normalisation the training padding is 0: what evaluation pads with
    assert torch.allclose(norm(torch.from_numpy(img)[None])[:, 20:, :], torch.zeros(1, 44, 64))


def test_train_and_eval_pad_alike_through_the_experiment_layer() -> None:
    from irlib.engine.experiment import DataSettings, load_data

    settings = DataSettings(dataset="synthetic", synthetic_train=2, synthetic_test=1, synthetic_size=48)
    recipe = get_recipe("cpu_demo", crop_size=64, pad="mean", hflip=False, vflip=False, transpose=False)
    data = load_data(settings, recipe, seed=0)
    image = data.train[0]["image"]
    assert image.shape == (1, 64, 64)
    pad = data.normalize(image)[0, 48:, :]
    assert torch.allclose(pad, torch.zeros_like(pad), atol=1e-6)
    with pytest.raises(IrlibInputError, match="reference normalisation"):
        load_data(settings, get_recipe("basicirstd"), seed=0)


def test_run_seed_changes_the_augmentation() -> None:
    from irlib.engine.experiment import DataSettings, load_data

    settings = DataSettings(dataset="synthetic", synthetic_train=3, synthetic_test=1, synthetic_size=64)
    recipe = get_recipe("cpu_demo", crop_size=32)
    a, b = load_data(settings, recipe, seed=0).train, load_data(settings, recipe, seed=1).train
    assert torch.equal(a[0]["image"], load_data(settings, recipe, seed=0).train[0]["image"])
    assert not all(torch.equal(a[i]["image"], b[i]["image"]) for i in range(3))
    assert torch.equal(a.with_seed(1)[2]["image"], b[2]["image"])


# ----------------------------------------------------------------------------- loop options
KW = dict(normalize=NORM, lr=1e-2, progress=False, seed=3)


def test_batches_drop_last_and_skip_singletons() -> None:
    assert [len(b) for b in epoch_batches(33, 16, 0, 0, drop_last=False, skip_singleton=True)] == [16, 16]
    assert [len(b) for b in epoch_batches(34, 16, 0, 0, drop_last=False, skip_singleton=True)] == [16, 16, 2]
    assert [len(b) for b in epoch_batches(34, 16, 0, 0, drop_last=True, skip_singleton=False)] == [16, 16]
    hist = fit(toy_net(0), ToyDataset(n=9), epochs=1, batch_size=4, drop_last=False, skip_singleton_batch=True, **KW)
    assert hist.rows[0]["steps"] == 2


class WeightedToy(ToyDataset):
    def __init__(self, weights: list[float]) -> None:
        super().__init__(n=len(weights))
        self.weights = weights

    def __getitem__(self, i: int) -> dict:
        return {**super().__getitem__(i), "weight": torch.tensor(self.weights[i])}


def test_per_sample_weights_zero_weight_ignores_the_image() -> None:
    """Images with weight 0 do not move the model: training on weights (1, 1, 0, 0) in one batch
    equals training on the first two images alone."""
    from irlib.engine import build_loss

    w = fit(toy_net(0), WeightedToy([1.0, 1.0, 0.0, 0.0]), epochs=1, batch_size=4, **KW)
    logits = torch.randn(4, 1, 8, 8)
    target = (torch.rand(4, 1, 8, 8) > 0.8).float()
    loss = build_loss("softiou")
    per = loss.per_sample(logits, target)
    assert per[1].item() == pytest.approx(loss(logits[1:2], target[1:2]).item())
    assert loss.weighted(logits, target, torch.tensor([1.0, 1.0, 0.0, 0.0])).item() == pytest.approx(
        per[:2].mean().item())
    assert w.rows[0]["steps"] == 1
    with pytest.raises(IrlibInputError, match="weights"):
        loss.weighted(logits, target, torch.tensor([1.0, -1.0, 0.0, 0.0]))


class Recorder(Hook):
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def on_epoch_start(self, ctx) -> None:
        self.calls.append(("start", ctx.epoch))

    def on_epoch_end(self, ctx) -> None:
        self.calls.append(("end", ctx.epoch))
        ctx.row["hook_value"] = ctx.epoch * 10


def test_hooks_run_every_epoch_and_add_columns() -> None:
    rec = Recorder()
    hist = fit(toy_net(0), ToyDataset(n=4), epochs=2, batch_size=2, hooks=[rec], **KW)
    assert rec.calls == [("start", 0), ("end", 0), ("start", 1), ("end", 1)]
    assert hist.column("hook_value") == [0, 10]


def test_gradient_clipping_bounds_the_update() -> None:
    """With SGD (lr 1, no momentum) the first update equals the clipped gradient."""
    base = dict(optimizer="sgd", momentum=0.0, lr=1.0, epochs=1, batch_size=4, weight_decay=0.0)
    start = toy_net(0)
    clipped = toy_net(0)
    fit(clipped, ToyDataset(n=4), Recipe(**base, grad_clip=1e-3), normalize=NORM, progress=False, seed=3)
    delta = torch.cat([(a - b).flatten() for a, b in zip(clipped.parameters(), start.parameters())])
    assert delta.norm().item() == pytest.approx(1e-3, rel=1e-4)
    free = toy_net(0)
    fit(free, ToyDataset(n=4), Recipe(**base), normalize=NORM, progress=False, seed=3)
    delta = torch.cat([(a - b).flatten() for a, b in zip(free.parameters(), start.parameters())])
    assert delta.norm().item() > 1e-2


def test_validation_best_epoch_is_reported_separately(tmp_path: Path) -> None:
    hist = fit(toy_net(0), ToyDataset(n=8), epochs=4, batch_size=4, val_set=ToyDataset(n=2, seed=1),
               checkpoint_dir=tmp_path, **{**KW, "lr": 2e-2})
    vals = hist.column("val_IoU")
    assert all(v is not None for v in vals)
    assert hist.best_epoch == int(np.argmax(vals)) + 1 and hist.best_value == max(vals)
    assert hist.best_metric == "IoU" and hist.best_state is not None
    best = torch.load(tmp_path / "best.pt", weights_only=False)
    assert best["epoch"] == hist.best_epoch
    assert all(torch.equal(best["model"][k], hist.best_state[k]) for k in hist.best_state)


def test_head_prior_and_bce_warmup() -> None:
    from irlib.models import create_model

    torch.manual_seed(0)
    host = create_model("acm")
    assert output_layers(host) == ["head.block.4"]
    apply_head_prior(host, 0.01)
    x = torch.randn(2, 1, 64, 64)
    host.eval()
    with torch.no_grad():
        p = torch.sigmoid(host(x))
    assert abs(p.mean().item() - 0.01) < 0.01
    with pytest.raises(IrlibInputError, match="no output layer"):
        apply_head_prior(nn.Sequential(nn.Conv2d(1, 2, 1)), 0.01)
    rec = Recorder()
    r = Recipe(epochs=3, batch_size=4, loss="softiou", warmup_loss="bce", warmup_loss_epochs=2, lr=1e-2)
    hist = fit(toy_net(0), ToyDataset(n=4), r, normalize=NORM, progress=False, seed=0, hooks=[rec])
    # BCE of a near-0.5 start is about log 2, SoftIoU of a sparse target is near 1
    assert hist.losses[0] < 0.8 and hist.losses[2] > 0.8


def test_faithful_recipe_on_a_tiny_real_like_run_is_deterministic() -> None:
    r = get_recipe("basicirstd", epochs=2, batch_size=3, crop_size=32, normalization="measured")
    runs = []
    for _ in range(2):
        model = toy_net(0)
        hist = fit(model, ToyDataset(n=7), r, normalize=NORM, progress=False, seed=5)
        runs.append((hist.losses, [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    assert math.isfinite(runs[0][0][-1])


def test_reference_log_comparison_uses_ten_epoch_means() -> None:
    from irlib.engine.reference import compare_losses, reference_log, ten_epoch_means

    losses = [1.0] * 10 + [0.5] * 10
    assert ten_epoch_means(losses) == {10: 1.0, 20: 0.5}
    log = reference_log("nuaa-sirst", "ACM")
    assert log is not None and log.loss[400] == pytest.approx(0.329325) and log.IoU == 69.44
    rows = compare_losses([0.9] * 60, log)
    assert [r["epoch"] for r in rows] == [50] and rows[0]["difference"] == pytest.approx(0.9 - 0.993371)
    assert reference_log("IRSTD-1K", "acm") is None


def test_stop_after_escape_ends_the_run_early() -> None:
    from irlib.engine.trainer import StopAfterEscape

    stop = StopAfterEscape(level=0.95, extra=1)
    hist = fit(toy_net(0), ToyDataset(n=8), epochs=30, batch_size=4, hooks=[stop], **{**KW, "lr": 2e-2})
    assert stop.escaped_at is not None and len(hist.rows) == stop.escaped_at + 1
    assert hist.stopped_early and not hist.completed
    assert hist.losses[stop.escaped_at - 1] < 0.95 <= min(hist.losses[:stop.escaped_at - 1] + [1.0])
