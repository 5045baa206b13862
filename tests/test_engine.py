"""irlib.engine: losses on hand-computed inputs, determinism, exact resume, NaN stop, predict."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from irlib.engine import (
    History,
    NonFiniteLossError,
    Normalize,
    SupervisedObjective,
    build_loss,
    edge_map,
    fit,
    load_checkpoint,
    predict,
    trainable_state,
)
from irlib.errors import IrlibInputError

NORM = Normalize(0.2, 0.25)



class ToyDataset(Dataset):
    """Dim noisy images with one bright square target; optional flips drawn from torch's RNG."""

    def __init__(self, n: int = 8, size: int | tuple[int, int] = 32, augment: bool = False,
                 seed: int = 0) -> None:
        h, w = (size, size) if isinstance(size, int) else size
        rng = np.random.default_rng(seed)
        self.items = []
        for i in range(n):
            img = rng.uniform(0.1, 0.3, (h, w)).astype(np.float32)
            mask = np.zeros((h, w), np.float32)
            y, x = rng.integers(2, h - 6), rng.integers(2, w - 6)
            mask[y:y + 4, x:x + 4] = 1
            img[mask > 0] = 0.9
            self.items.append((torch.from_numpy(img)[None], torch.from_numpy(mask)[None], f"img{i:02d}"))
        self.augment = augment

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        img, mask, name = self.items[i]
        if self.augment and torch.rand(()) < 0.5:
            img, mask = img.flip(-1), mask.flip(-1)
        return {"image": img, "mask": mask, "name": name}


class ToyNet(nn.Module):
    """Fully convolutional, with BatchNorm and dropout (so RNG state matters)."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.Dropout2d(0.2), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def toy_net(seed: int = 0) -> ToyNet:
    torch.manual_seed(seed)
    return ToyNet()


def params_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------------------------- losses
def test_softiou_dice_bce_known_values() -> None:
    logits = torch.zeros(1, 1, 2, 2)  # p = 0.5 everywhere
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    # inter = 1, sum(p) = 2, sum(t) = 2: IoU = (1 + 1) / (2 + 2 - 1 + 1) = 0.5
    assert build_loss("softiou")(logits, target).item() == pytest.approx(0.5)
    # Dice = (2 + 1) / (2 + 2 + 1) = 0.6
    assert build_loss("dice")(logits, target).item() == pytest.approx(0.4)
    assert build_loss("bce")(logits, target).item() == pytest.approx(math.log(2))
    # a confident, correct prediction: SoftIoU = 1 - (2 + 1) / (2 + 2 - 2 + 1) = 0
    sure = torch.where(target > 0, 50.0, -50.0)
    assert build_loss("softiou")(sure, target).item() == pytest.approx(0.0, abs=1e-6)


def test_edge_map_cross_ring() -> None:
    mask = torch.zeros(1, 1, 7, 7)
    mask[..., 2:5, 2:5] = 1
    edge = edge_map(mask, radius=1)[0, 0]
    # inner ring: the 8 border pixels of the 3x3 square; outer ring: 4-neighbours, no corners
    assert edge[3, 3] == 0 and edge[2:5, 2:5].sum() == 8
    assert edge.sum() == 8 + 12
    assert edge[1, 1] == 0 and edge[1, 2] == 1


@pytest.mark.parametrize("radius", [1, 2])
def test_edge_map_matches_distance_transform_band(radius: int) -> None:
    """Same band as FEST's edge maps: EDT(mask) + EDT(1 - mask) in (0, radius], zero-padded."""
    from scipy.ndimage import distance_transform_edt

    rng = np.random.default_rng(radius)
    mask = (rng.random((20, 24)) > 0.8).astype(np.float64)
    pad = np.pad(mask, 1)
    dist = (distance_transform_edt(pad) + distance_transform_edt(1 - pad))[1:-1, 1:-1]
    expected = (dist > 0) & (dist <= radius)
    got = edge_map(torch.from_numpy(mask).float()[None, None], radius)[0, 0].numpy() > 0
    assert np.array_equal(got, expected)


def test_edge_ohem_bce_known_value() -> None:
    logits = torch.tensor([[[[2.0, 0.0], [-1.0, 0.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    # edges (radius 1): (0,0), (0,1), (1,0) weigh 4; (1,1) is diagonal, weighs 1.
    # weighted BCE: 4*log1p(e^-2), 4*log 2, 4*log1p(e^-1), log 2 -> keep values >= 3rd smallest
    expected = (4 * math.log(2) + 4 * math.log1p(math.exp(-1))) / 2
    got = build_loss("edge_bce_ohem")(logits, target).item()
    assert got == pytest.approx(expected, rel=1e-6)
    assert build_loss("eedm", drop_ratio=0.0)(logits, target).item() == pytest.approx(
        (4 * math.log1p(math.exp(-2)) + 4 * math.log(2) + 4 * math.log1p(math.exp(-1)) + math.log(2)) / 4,
        rel=1e-6)


@pytest.mark.parametrize("name", ["softiou", "bce", "dice", "edge_bce_ohem"])
def test_deep_supervision_is_the_mean(name: str) -> None:
    g = torch.Generator().manual_seed(0)
    target = (torch.rand(2, 1, 8, 8, generator=g) > 0.8).float()
    a, b, c = (torch.randn(2, 1, 8, 8, generator=g) for _ in range(3))
    loss = build_loss(name)
    expected = (loss(a, target) + loss(b, target) + loss(c, target)) / 3
    assert loss([a, b, c], target).item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(IrlibInputError):
        loss([a, torch.zeros(2, 1, 4, 4)], target)


def test_loss_and_normalize_errors() -> None:
    with pytest.raises(IrlibInputError, match="unknown loss"):
        build_loss("focal")
    with pytest.raises(IrlibInputError):
        Normalize(0.5, 0.0)
    x = torch.full((1, 1, 2, 2), 0.45)
    assert torch.allclose(Normalize(0.2, 0.25)(x), torch.ones_like(x))


def test_losses_have_gradients() -> None:
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    target = (torch.rand(2, 1, 8, 8) > 0.7).float()
    for name in ("softiou", "bce", "dice", "edge_bce_ohem"):
        logits.grad = None
        build_loss(name)(logits, target).backward()
        assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------- training
KW = dict(normalize=NORM, batch_size=2, lr=1e-2, progress=False, seed=3)


def test_same_seed_same_weights_and_history() -> None:
    runs = []
    for init in (0, 0):
        model = toy_net(init)
        hist = fit(model, ToyDataset(augment=True), epochs=2, **KW)
        runs.append((model, hist))
    (m1, h1), (m2, h2) = runs
    assert params_equal(m1, m2)
    assert h1.losses == h2.losses and h1.completed and len(h1.rows) == 2
    m3 = toy_net(0)
    h3 = fit(m3, ToyDataset(augment=True), epochs=2, **{**KW, "seed": 4})
    assert h3.losses != h1.losses


class Crash(Exception):
    pass


class CrashAt:
    """An objective that dies (like a killed process) when it is called for the ``at``-th time."""

    def __init__(self, at: int) -> None:
        self.inner = SupervisedObjective("softiou", NORM)
        self.calls, self.at = 0, at

    def __call__(self, model: nn.Module, batch: dict):
        self.calls += 1
        if self.calls == self.at:
            raise Crash
        return self.inner(model, batch)


def test_resume_after_kill_mid_epoch_gives_identical_weights(tmp_path: Path) -> None:
    common = dict(epochs=3, scheduler="cosine", **KW)
    ref = toy_net(0)
    ref_hist = fit(ref, ToyDataset(augment=True), checkpoint_dir=tmp_path / "ref", **common)
    assert ref_hist.global_step == 12

    # killed during step 7 (epoch 2, step 3 of 4); the last checkpoint is after step 6
    model = toy_net(0)
    with pytest.raises(Crash):
        fit(model, ToyDataset(augment=True), checkpoint_dir=tmp_path / "run", checkpoint_every=3,
            objective=CrashAt(7), **common)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["position"]["global_step"] == 6
    torch.manual_seed(123)  # a fresh process: other RNG state, other initial weights
    torch.rand(5)
    resumed = toy_net(99)
    hist = fit(resumed, ToyDataset(augment=True), checkpoint_dir=tmp_path / "run", resume=True, **common)
    assert params_equal(resumed, ref)
    assert hist.losses == ref_hist.losses and hist.completed

    # stop with max_steps mid-epoch, then resume: same again
    model = toy_net(0)
    part = fit(model, ToyDataset(augment=True), checkpoint_dir=tmp_path / "steps", max_steps=5, **common)
    assert not part.completed and part.global_step == 5
    model = toy_net(7)
    fit(model, ToyDataset(augment=True), checkpoint_dir=tmp_path / "steps", resume=True, **common)
    assert params_equal(model, ref)
    saved = History.from_json(tmp_path / "steps" / "history.json")
    assert saved.losses == ref_hist.losses


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    fit(toy_net(0), ToyDataset(), epochs=1, checkpoint_dir=tmp_path, **KW)
    with pytest.raises(IrlibInputError, match="resume"):
        fit(toy_net(0), ToyDataset(), epochs=1, checkpoint_dir=tmp_path, resume=True,
            **{**KW, "lr": 1e-3})


def test_nan_loss_stops_with_position_and_terms() -> None:
    class NanAt2:
        calls = 0

        def __call__(self, model, batch):
            self.calls += 1
            out = model(NORM(batch["image"]))
            bce = nn.functional.binary_cross_entropy_with_logits(out, batch["mask"])
            loss = bce * (float("nan") if self.calls == 2 else 1.0)
            return loss, {"bce": float(bce.detach()), "total": float(loss.detach())}

    with pytest.raises(NonFiniteLossError, match=r"epoch 1/2, step 2/4.*total=nan"):
        fit(toy_net(0), ToyDataset(), epochs=2, objective=NanAt2(), **KW)


def test_short_training_run_loss_falls(tmp_path: Path) -> None:
    hist = fit(toy_net(0), ToyDataset(n=8), epochs=6, eval_set=ToyDataset(n=2, seed=1), eval_every=4,
               **{**KW, "batch_size": 4, "lr": 2e-2})
    assert hist.losses[-1] < 0.6 * hist.losses[0]
    assert [r.get("eval_IoU") is not None for r in hist.rows] == [False, False, False, True, False, True]
    hist.to_csv(tmp_path / "h.csv")
    hist.to_json(tmp_path / "h.json", params={"toy": True}, seed=3)
    assert History.from_json(tmp_path / "h.json").losses == hist.losses
    assert (tmp_path / "h.csv").read_text().splitlines()[0].startswith("epoch,loss")


def test_training_a_registered_host_on_synthetic_data() -> None:
    """The real pieces together: SyntheticSirst -> SirstTorchDataset -> U-Net -> fit."""
    from irlib import data, models
    from irlib.data.torchdata import SirstTorchDataset

    base = data.SyntheticSirst(4, size=64, seed=0)
    ds = SirstTorchDataset(base, train=True, crop_size=64, seed=0)
    torch.manual_seed(0)
    host = models.create_model("unet", base_width=4)
    hist = fit(host, ds, epochs=4, normalize=NORM, batch_size=4, lr=1e-2, loss="bce", progress=False)
    assert hist.losses[-1] < hist.losses[0]


class FrozenPart(nn.Module):
    frozen = True

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        for p in self.parameters():
            p.requires_grad_(False)


class WithFrozen(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = FrozenPart()
        self.head = nn.Conv2d(4, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder.conv(x))


def test_checkpoints_leave_out_frozen_modules(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = WithFrozen()
    assert set(trainable_state(model)) == {"head.weight", "head.bias"}
    frozen_before = model.encoder.conv.weight.clone()
    fit(model, ToyDataset(), epochs=1, checkpoint_dir=tmp_path, **KW)
    assert torch.equal(model.encoder.conv.weight, frozen_before)
    assert set(load_checkpoint(tmp_path / "last.pt")["model"]) == {"head.weight", "head.bias"}


# ---------------------------------------------------------------------------------- evaluation
def test_predict_native_size_odd_shapes(tmp_path: Path) -> None:
    items = [ToyDataset(n=1, size=(37, 45), seed=1)[0], ToyDataset(n=1, size=(33, 20), seed=2)[0]]
    items[1]["name"] = "second"
    model = toy_net(0)
    model.train()
    probs = predict(model, items, NORM, device="cpu", out_dir=tmp_path)
    assert model.training  # mode restored
    assert [p.shape for p in probs] == [(37, 45), (33, 20)]
    assert all(p.dtype == np.float32 and p.min() >= 0 and p.max() <= 1 for p in probs)
    assert np.array_equal(np.load(tmp_path / "second.npy"), probs[1])
    from irlib.metrics.io import load_predictions

    assert set(load_predictions(tmp_path)) == {"img00", "second"}
    # same as running the padded image by hand and cropping
    model.eval()
    x = nn.functional.pad(NORM(items[0]["image"][None]), (0, 64 - 45, 0, 64 - 37))
    with torch.no_grad():
        manual = torch.sigmoid(model(x))[0, 0, :37, :45].numpy()
    assert np.allclose(manual, probs[0], atol=1e-6)


def test_evaluate_model_matches_metrics_on_predict(tmp_path: Path) -> None:
    from irlib.engine import evaluate_model
    from irlib.metrics import evaluate

    ds, model = ToyDataset(n=3), toy_net(0)
    result = evaluate_model(model, ds, NORM, device="cpu", out_dir=tmp_path).metrics
    assert {"IoU", "nIoU", "Pd", "Fa"} <= set(result)
    probs = predict(model, ds, NORM, device="cpu")
    masks = [ds[i]["mask"][0].numpy() > 0.5 for i in range(len(ds))]
    assert result == pytest.approx(evaluate(probs, masks))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img00.npy", "img01.npy", "img02.npy",
                                                         "predictions.json"]
