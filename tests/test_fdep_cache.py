"""Frozen-feature caching for CO-ISD (irlib/fdep/cache.py): aligned crops, exact cuts, and cached
training steps equal to the uncached ones with the same (whole-image) semantics."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from irlib.data.sample import Sample
from irlib.data.torchdata import SirstTorchDataset
from irlib.data.transforms import JointAugment, random_dihedral
from irlib.engine import Normalize
from irlib.errors import IrlibInputError
from irlib.fdep import CoISD, CoISDObjective
from irlib.fdep import experiment as fx
from irlib.fdep.cache import FrozenFeatures, canvas_shape, estimate_bytes, variant_window
from irlib.fdep.store import DiskStore, MemoryStore
from irlib.models import create_model
from irlib.vfm import create_encoder


def _samples(n: int = 6, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = int(rng.integers(40, 150)), int(rng.integers(40, 150))
        out.append(Sample(f"img/{i}", rng.random((h, w)).astype(np.float32), rng.random((h, w)) > 0.99))
    return out


def _old_joint_augment(aug: JointAugment, rng: np.random.Generator, *arrays: np.ndarray) -> list[np.ndarray]:
    """JointAugment.__call__ as it was before alignment existed (reference for bit-identity)."""
    ch, cw = (aug.crop_size, aug.crop_size) if isinstance(aug.crop_size, int) else aug.crop_size
    pads = [aug.image_pad] + [0.0] * (len(arrays) - 1)
    padded = [np.pad(a, ((0, max(ch - a.shape[0], 0)), (0, max(cw - a.shape[1], 0))), constant_values=v)
              for a, v in zip(arrays, pads)]
    ph, pw = padded[0].shape
    target = padded[1] > 0
    while True:
        top, left = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
        if aug.pos_prob is None or not target.any():
            break
        if rng.random() > aug.pos_prob or target[top:top + ch, left:left + cw].any():
            break
    out = [a[top:top + ch, left:left + cw] for a in padded]
    return random_dihedral(out, rng, aug.hflip, aug.vflip, aug.transpose and ch == cw)


def test_default_augmentation_and_items_are_unchanged() -> None:
    samples = _samples()
    for aug in (JointAugment(64, image_pad=0.3, pos_prob=0.5), JointAugment((32, 96))):
        ds = SirstTorchDataset(samples, train=True, seed=3, augment=aug)
        for i, s in enumerate(samples):
            item = ds[i]
            ref = _old_joint_augment(aug, ds.rng_for(i), s.image, s.mask)
            assert set(item) == {"image", "mask", "name"}
            assert np.array_equal(item["image"][0].numpy(), ref[0])
            assert np.array_equal(item["mask"][0].numpy(), ref[1].astype(np.float32))
        assert "align" not in repr(aug)


@pytest.mark.parametrize("crop", [64, (32, 96)])
def test_aligned_crops_are_exact_windows_of_the_flipped_canvas(crop) -> None:
    samples = _samples(8)
    ds = SirstTorchDataset(samples, True, seed=1, augment=JointAugment(crop, image_pad=0.3, pos_prob=0.5, align=32))
    features = FrozenFeatures(create_encoder("tiny_cnn_random"), [0, 1, 2, 3], ds)
    variants = set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i, s in enumerate(samples):
            item = ds[i]
            top, left = item["offset"].tolist()
            assert top % 32 == 0 and left % 32 == 0 and item["index"] == i
            canvas = features.canvas(i, item["variant"])
            t, l, h, w = variant_window((top, left), features.crop, canvas_shape(s.shape, features.crop, 32),
                                        item["variant"])
            assert np.array_equal(canvas[t:t + h, l:l + w], item["image"][0].numpy())
            variants.add(item["variant"])
    assert variants == (set(range(8)) if crop == 64 else set(range(4)))


def test_alignment_and_encoder_requirements_are_checked() -> None:
    with pytest.raises(IrlibInputError, match="multiple"):
        JointAugment(60, align=32)
    enc = create_encoder("tiny_cnn_random")
    with pytest.raises(IrlibInputError, match="aligned"):
        FrozenFeatures(enc, [0, 1, 2, 3], SirstTorchDataset(_samples(), True, augment=JointAugment(64)))
    with pytest.raises(IrlibInputError, match="aligned"):
        FrozenFeatures(enc, [0, 1, 2, 3], SirstTorchDataset(_samples(), True, augment=JointAugment(64, align=16)))
    with pytest.raises(IrlibInputError, match="resize"):
        FrozenFeatures(create_encoder("tiny_cnn_random", resize=96), [0, 1, 2, 3],
                       SirstTorchDataset(_samples(), True, augment=JointAugment(64, align=32)))


def _setup(n: int = 6):
    ds = SirstTorchDataset(_samples(n), True, seed=2, augment=JointAugment(64, image_pad=0.4, align=32))
    torch.manual_seed(0)
    model = CoISD(create_model("acm"), create_encoder("tiny_cnn_random")).train()
    batch = default_collate([ds[i] for i in range(n)])
    return ds, model, batch


def _step(model: CoISD, features: FrozenFeatures | None, batch) -> tuple[float, dict[str, torch.Tensor]]:
    model = copy.deepcopy(model)
    if features is not None:
        features.encoder = model.encoder
    objective = CoISDObjective("softiou", 1.0, Normalize(0.4, 0.15), features)
    torch.manual_seed(1)  # the host's head has dropout: same mask in every compared step
    loss, _ = objective(model, batch)
    loss.backward()
    return float(loss.detach()), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def test_no_samf_module_needs_no_encoder_maps() -> None:
    ds = SirstTorchDataset(_samples(4), True, seed=2, augment=JointAugment(64, align=32))
    torch.manual_seed(0)
    model = CoISD(create_model("acm"), create_encoder("tiny_cnn_random"), num_samf=0, vfm_layers=[]).train()
    batch = default_collate([ds[i] for i in range(4)])
    features = FrozenFeatures.for_model(model, ds, MemoryStore(2**30))
    assert features(batch) == [] and features.stats["misses"] == 0
    loss, _ = _step(model, features, batch)
    assert np.isfinite(loss)


def test_cached_and_uncached_steps_give_the_same_loss_and_gradients() -> None:
    ds, model, batch = _setup()
    uncached = FrozenFeatures.for_model(model, ds)
    cached = FrozenFeatures.for_model(model, ds, MemoryStore(2**30))
    cached(batch)  # warm
    loss_u, grads_u = _step(model, uncached, batch)
    loss_c, grads_c = _step(model, cached, batch)
    assert cached.stats["hits"] == len(ds) and cached.stats["misses"] == len(ds)
    assert loss_c == loss_u and grads_c.keys() == grads_u.keys()
    assert all(torch.equal(grads_c[k], grads_u[k]) for k in grads_u)
    assert any(k.startswith("samf") for k in grads_u)
    # the cut maps have the crop's grid; whole-image semantics differ from the per-crop path
    maps = uncached(batch)
    assert [tuple(m.shape[-2:]) for m in maps] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    loss_crop, _ = _step(model, None, batch)
    assert loss_crop != loss_u
    # float16 storage: rounded maps, close loss
    half = FrozenFeatures.for_model(model, ds, MemoryStore(2**30), dtype=torch.float16)
    for a, b in zip(half(batch), maps):
        assert a.dtype == torch.float32 and torch.allclose(a, b, rtol=2**-10, atol=1e-6)
    assert _step(model, half, batch)[0] == pytest.approx(loss_u, rel=1e-3)


def test_memory_store_refuses_when_full_and_estimate_matches() -> None:
    ds, model, batch = _setup(4)
    store = MemoryStore(2**30)
    features = FrozenFeatures.for_model(model, ds, store)
    for i, s in enumerate(ds.base):
        for v in range(8):
            features.whole(i, s.name, v)
    shapes = [s.shape for s in ds.base]
    assert store.bytes == estimate_bytes(shapes, model.encoder, model.vfm_layers, (64, 64), 32)
    first = estimate_bytes(shapes[:1], model.encoder, model.vfm_layers, (64, 64), 32, variants=1)
    small = FrozenFeatures.for_model(model, ds, MemoryStore(first + 1))  # room for item 0 only
    small(batch)
    small(batch)
    assert small.stats == {"hits": 1, "misses": 7, "refused": 6}
    assert small.summary()["entries"] == 1 and small.store.bytes == first


def test_disk_store_survives_a_new_cache(tmp_path) -> None:
    ds, model, batch = _setup(3)
    first = FrozenFeatures.for_model(model, ds, DiskStore(tmp_path))
    maps = first(batch)
    second = FrozenFeatures.for_model(model, ds, DiskStore(tmp_path))
    again = second(batch)
    assert second.stats == {"hits": 3, "misses": 0, "refused": 0}
    assert all(torch.equal(a, b) for a, b in zip(maps, again))
    assert len(list(tmp_path.glob("img_*_v*.pt"))) == 3


def test_config_checks_and_smoke_run_with_memory_cache() -> None:
    with pytest.raises(ValueError, match="vfm_cache"):
        fx.make_config("smoke", vfm_cache="gpu")
    with pytest.raises(ValueError, match="vfm_cache_dir"):
        fx.make_config("smoke", vfm_cache="disk")
    cfg = fx.make_config("smoke", encoder="tiny_cnn_random", vfm_cache="memory", epochs=2,
                         synthetic_train=8, max_train_images=8, synthetic_test=2, max_test_images=2)
    data = fx.load_data(cfg)
    assert data.train.augment.align == 32 and fx.load_data(fx.make_config("smoke")).train.augment.align is None
    assert {"index", "variant", "offset"} <= set(data.train[0])
    result = fx.run_arm(cfg, "fdep", 0, data, progress=False, keep=())
    stats = result.extra["vfm_cache"]
    assert stats["misses"] > 0 and stats["hits"] + stats["misses"] == 2 * 8
    assert result.row["vfm_cache"] == "memory" and result.row["crop_align"] == 32
