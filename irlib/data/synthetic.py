"""``SyntheticSirst``: the embedded default dataset, infrared-like scenes with known targets.

Image ``i`` of a generator depends only on ``(seed, offset + i)`` (its random stream is
``numpy.random.default_rng([seed, offset + i])``), so the dataset is random-access and
reproducible. One image is made of, in order:

1. **background** (arbitrary units, then mapped linearly to a random gray range
   ``[lo, lo + span]``): 1/f^beta clutter (power spectrum exponent ``beta`` drawn from
   ``clutter_beta_range``); with ``cloud_probability`` a smooth cloud layer (a thresholded
   1/f^3.6 field with a soft edge); with ``horizon_probability`` a horizon line at a random tilt
   splitting sky and ground (ground with its own anisotropic texture, sky brightening towards
   the horizon, sometimes a thin bright sea-sky line); with ``structure_probability`` 1-3 sharp
   rectangles (buildings, edges and corners);
2. **distractors**: 0..``max_distractors`` bright objects that are not targets and are always
   larger than any target: elongated Gaussian blobs (minor sigma >= 2.5 px, area at 20 % of
   peak > 90 px) and thin bright line segments (25-90 px long);
3. **gain variation**: a random vignetting ``1 - v r^2`` and per-column gain stripes multiply
   the scene;
4. **targets**: with probability ``empty_fraction`` none, else 1..5 drawn with
   ``target_count_weights``; each is an isotropic Gaussian or (``elliptic_fraction``) an
   elliptic Gaussian with aspect in ``aspect_range`` and a random angle; its mask area is drawn
   so that its square root (the equivalent diameter) is uniform over ``area_range`` (1-80 px,
   median about 25 px), and its peak amplitude is ``scr`` times the local
   clutter std (21x21 window, noise included) with ``scr`` log-uniform in ``scr_range``
   (capped so the peak stays below 0.98). Targets keep 3 px away from each other and from
   distractors, so each is its own 8-connected component;
5. **sensor noise**: white Gaussian noise (std in ``noise_std_range``) and per-column offsets
   (fixed-pattern stripes), then clipping to [0, 1].

**Masks are exact**: a target's mask is where its own added signal is at least
``mask_fraction`` (default 0.2) of its peak (the peak is the largest sampled value, so every
target has at least one pixel). Masks never depend on the background or noise; the area is
controlled through the Gaussian's sigmas (continuous area ``2 pi sx sy ln(1/mask_fraction)``)
and checked on the pixel grid (redrawn until it lies in ``area_range`` and is one component).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image
from scipy import fft as sfft

from irlib.data.components import label_targets
from irlib.data.sample import Sample
from irlib.errors import IrlibInputError
from irlib.repro import atomic_write_bytes


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the scene model (see the module docstring for what each one does)."""

    empty_fraction: float = 0.1
    target_count_weights: tuple[float, ...] = (0.45, 0.25, 0.15, 0.10, 0.05)
    area_range: tuple[float, float] = (1.0, 80.0)
    elliptic_fraction: float = 0.5
    aspect_range: tuple[float, float] = (1.3, 3.0)
    scr_range: tuple[float, float] = (3.0, 60.0)
    mask_fraction: float = 0.2
    clutter_beta_range: tuple[float, float] = (2.0, 3.2)
    cloud_probability: float = 0.6
    horizon_probability: float = 0.5
    structure_probability: float = 0.35
    max_distractors: int = 4
    noise_std_range: tuple[float, float] = (0.003, 0.015)
    stripe_std_range: tuple[float, float] = (0.0, 0.006)
    vignetting_range: tuple[float, float] = (0.0, 0.3)
    gray_low_range: tuple[float, float] = (0.05, 0.35)
    gray_span_range: tuple[float, float] = (0.25, 0.65)


@dataclass(frozen=True)
class SyntheticTarget:
    """Ground truth of one rendered target (centre in pixel coordinates, row first)."""

    center: tuple[float, float]
    sigma: tuple[float, float]
    angle: float
    profile: str
    amplitude: float
    scr: float
    area: int


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


class _Spectrum:
    """Frequency grids of one image size, for 1/f^beta fields made with one inverse FFT."""

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w
        self.fy = np.fft.fftfreq(h)[:, None].astype(np.float32)
        self.fx = np.fft.rfftfreq(w)[None, :].astype(np.float32)

    def field(self, rng: np.random.Generator, beta: float, stretch_x: float = 1.0) -> np.ndarray:
        """Zero-mean, unit-std random field with power spectrum ~ 1/f^beta."""
        f = np.sqrt((self.fx * stretch_x) ** 2 + self.fy ** 2)
        f[0, 0] = 1.0
        amp = f ** (-beta / 2.0)
        amp[0, 0] = 0.0
        shape = amp.shape
        spec = (rng.standard_normal(shape, dtype=np.float32)
                + 1j * rng.standard_normal(shape, dtype=np.float32)) * amp
        out = sfft.irfft2(spec, s=(self.h, self.w), workers=1)
        out -= out.mean()
        return (out / (out.std() + 1e-12)).astype(np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class SyntheticSirst:
    """Random-access synthetic SIRST dataset with the same API as :class:`SirstDataset`.

    ``SyntheticSirst(num_images, size=256, seed=0)``; ``size`` is an int or ``(H, W)`` (at least
    48 px each); ``offset`` shifts the image indices (``open_dataset`` uses it to keep train and
    test disjoint); remaining keyword arguments override fields of :class:`SyntheticConfig`.
    """

    name = "Synthetic"

    def __init__(self, num_images: int, size: int | Sequence[int] = 256, seed: int = 0,
                 offset: int = 0, config: SyntheticConfig | None = None, cache: bool = False,
                 **params: Any) -> None:
        if num_images < 0:
            raise IrlibInputError(f"num_images must be >= 0, got {num_images}")
        if seed < 0 or offset < 0:
            raise IrlibInputError(f"seed and offset must be >= 0, got {seed}, {offset}")
        h, w = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
        if min(h, w) < 48:
            raise IrlibInputError(f"synthetic images must be at least 48x48, got size={size}")
        known = {f.name for f in fields(SyntheticConfig)}
        unknown = set(params) - known
        if unknown:
            raise IrlibInputError(f"unknown SyntheticSirst parameter(s) {sorted(unknown)}; "
                                  f"choose from {sorted(known)}")
        self.config = replace(config or SyntheticConfig(), **params)
        self.num_images, self.size, self.seed, self.offset = int(num_images), (int(h), int(w)), \
            int(seed), int(offset)
        self.cache = cache
        self._cache: dict[int, tuple[Sample, list[SyntheticTarget]]] = {}
        self._spectrum = _Spectrum(*self.size)
        self.names = [f"syn{self.seed}_{self.offset + i:06d}" for i in range(self.num_images)]

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> Sample:
        return self._get(index)[0]

    def targets(self, index: int) -> list[SyntheticTarget]:
        """Ground-truth parameters of the targets of image ``index``."""
        return self._get(index)[1]

    def _get(self, index: int) -> tuple[Sample, list[SyntheticTarget]]:
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"dataset index must be an integer, got {type(index).__name__}")
        i = int(index) + (self.num_images if index < 0 else 0)
        if not 0 <= i < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        if i in self._cache:
            return self._cache[i]
        layers, mask, targets = self._render(self._rng(i))
        out = (Sample(self.names[i], layers["image"], mask), targets)
        if self.cache:
            self._cache[i] = out
        return out

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.offset + i])

    def layers(self, index: int) -> dict[str, np.ndarray]:
        """The parts of image ``index``: ``scene`` (background, distractors, gain, stripes),
        ``signal`` (targets), ``noise``; ``image = clip(scene + signal + noise, 0, 1)``."""
        i = int(index) + (self.num_images if index < 0 else 0)
        if not 0 <= i < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        return self._render(self._rng(i))[0]

    # ---------------------------------------------------------------- scene model
    def _render(self, rng: np.random.Generator
                ) -> tuple[dict[str, np.ndarray], np.ndarray, list[SyntheticTarget]]:
        cfg = self.config
        h, w = self.size
        yy = np.arange(h, dtype=np.float32)[:, None]
        xx = np.arange(w, dtype=np.float32)[None, :]
        bg = self._background(rng, yy, xx)
        occupied = np.zeros((h, w), dtype=bool)
        bg = bg + self._distractors(rng, occupied)
        # gain variation: vignetting and per-column gain
        r2 = ((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2
        vig = rng.uniform(*cfg.vignetting_range)
        col_gain = 1.0 + rng.normal(0.0, 0.02, size=(1, w)).astype(np.float32)
        scene = bg * (1.0 - vig * r2 / 2.0) * col_gain
        noise_std = rng.uniform(*cfg.noise_std_range)
        stripes = rng.normal(0.0, rng.uniform(*cfg.stripe_std_range), size=(1, w))
        scene = scene + stripes.astype(np.float32)
        signal, mask, targets = self._targets(rng, scene, occupied, noise_std)
        noise = rng.normal(0.0, noise_std, size=(h, w)).astype(np.float32)
        image = np.clip(scene + signal + noise, 0.0, 1.0).astype(np.float32)
        return {"image": image, "scene": scene, "signal": signal, "noise": noise}, mask, targets

    def _background(self, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray
                    ) -> np.ndarray:
        cfg = self.config
        h, w = self.size
        sp = self._spectrum
        bg = sp.field(rng, rng.uniform(*cfg.clutter_beta_range)) * rng.uniform(0.3, 1.0)
        if rng.random() < cfg.cloud_probability:
            cloud = sp.field(rng, 3.6)
            cover = _sigmoid((cloud - rng.uniform(-0.5, 1.0)) / rng.uniform(0.1, 0.5))
            bg = bg + rng.uniform(1.0, 3.0) * cover * (1.0 + 0.2 * bg)
        if rng.random() < cfg.horizon_probability:
            y0 = rng.uniform(0.35, 0.8) * h
            tilt = math.radians(rng.uniform(-12, 12))
            d = (yy - y0) * math.cos(tilt) - (xx - w / 2) * math.sin(tilt)  # > 0 below horizon
            ground_w = _sigmoid(d / rng.uniform(0.4, 2.0))
            ground = (sp.field(rng, rng.uniform(1.6, 2.6), stretch_x=rng.uniform(1.0, 4.0))
                      * rng.uniform(0.5, 1.5) + rng.uniform(-2.5, 2.5))
            sky_glow = rng.uniform(0.0, 2.0) * np.exp(np.minimum(d, 0) / rng.uniform(8, 60))
            bg = (bg + sky_glow) * (1.0 - ground_w) + ground * ground_w
            if rng.random() < 0.5:  # thin sea-sky line, bright or dark
                bg = bg + rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 2.0) * np.exp(
                    -0.5 * (d / rng.uniform(0.5, 1.5)) ** 2)
            base = y0
        else:
            base = None
        if rng.random() < cfg.structure_probability:
            for _ in range(int(rng.integers(1, 4))):
                bw, bh = int(rng.integers(8, max(w // 4, 9))), int(rng.integers(8, max(h // 3, 9)))
                x0 = int(rng.integers(0, w - bw))
                y1 = int(base) if base is not None else int(rng.integers(bh, h))
                y0s = max(y1 - bh, 0)
                bg[y0s:y1, x0:x0 + bw] += rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 2.0)
        lo, hi = float(bg.min()), float(bg.max())
        low = rng.uniform(*cfg.gray_low_range)
        span = rng.uniform(*cfg.gray_span_range)
        return (low + span * (bg - lo) / max(hi - lo, 1e-6)).astype(np.float32)

    def _distractors(self, rng: np.random.Generator, occupied: np.ndarray) -> np.ndarray:
        h, w = self.size
        out = np.zeros((h, w), dtype=np.float32)
        for _ in range(int(rng.integers(0, self.config.max_distractors + 1))):
            amp = rng.uniform(0.08, 0.35)
            theta = rng.uniform(0, math.pi)
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            if rng.random() < 0.6:  # extended blob
                s_minor = rng.uniform(2.5, 5.0)
                s_major = rng.uniform(1.5 * s_minor, 14.0)
                reach = int(math.ceil(3.5 * s_major)) + 1
                win, (ys, xs) = self._window(cy, cx, reach)
                if win is None:
                    continue
                u = (xs - cx) * math.cos(theta) + (ys - cy) * math.sin(theta)
                v = -(xs - cx) * math.sin(theta) + (ys - cy) * math.cos(theta)
                prof = np.exp(-0.5 * ((u / s_major) ** 2 + (v / s_minor) ** 2))
            else:  # thin bright line segment
                half = rng.uniform(12.0, 45.0)
                width = rng.uniform(0.6, 1.5)
                reach = int(math.ceil(half + 4 * width)) + 1
                win, (ys, xs) = self._window(cy, cx, reach)
                if win is None:
                    continue
                u = (xs - cx) * math.cos(theta) + (ys - cy) * math.sin(theta)
                v = -(xs - cx) * math.sin(theta) + (ys - cy) * math.cos(theta)
                du = np.maximum(np.abs(u) - half, 0.0)
                prof = np.exp(-0.5 * (du ** 2 + v ** 2) / width ** 2)
            out[win] += (amp * prof).astype(np.float32)
            occupied[win] |= prof > 0.05
        return out

    def _window(self, cy: float, cx: float, reach: int
                ) -> tuple[Any, tuple[np.ndarray, np.ndarray]]:
        """Slices of the image window ``reach`` px around a point and its pixel coordinates."""
        h, w = self.size
        r0, r1 = max(int(cy) - reach, 0), min(int(cy) + reach + 1, h)
        c0, c1 = max(int(cx) - reach, 0), min(int(cx) + reach + 1, w)
        if r0 >= r1 or c0 >= c1:
            return None, (np.zeros(0), np.zeros(0))
        ys = np.arange(r0, r1, dtype=np.float32)[:, None]
        xs = np.arange(c0, c1, dtype=np.float32)[None, :]
        return (slice(r0, r1), slice(c0, c1)), (ys, xs)

    def _num_targets(self, rng: np.random.Generator) -> int:
        cfg = self.config
        if rng.random() < cfg.empty_fraction:
            return 0
        p = np.asarray(cfg.target_count_weights, dtype=np.float64)
        return int(rng.choice(len(p), p=p / p.sum())) + 1

    def _target_shape(self, rng: np.random.Generator) -> tuple[str, float, float, float]:
        cfg = self.config
        lo, hi = cfg.area_range
        area = rng.uniform(math.sqrt(lo), math.sqrt(hi)) ** 2  # uniform equivalent diameter
        prod = area / (2.0 * math.pi * math.log(1.0 / cfg.mask_fraction))  # sigma_u * sigma_v
        if rng.random() < cfg.elliptic_fraction:
            aspect = rng.uniform(*cfg.aspect_range)
            profile = "elliptic"
        else:
            aspect = 1.0
            profile = "gaussian"
        s_v = math.sqrt(prod / aspect)
        return profile, s_v * aspect, s_v, rng.uniform(0, math.pi)

    def _targets(self, rng: np.random.Generator, scene: np.ndarray, occupied: np.ndarray,
                 noise_std: float) -> tuple[np.ndarray, np.ndarray, list[SyntheticTarget]]:
        cfg = self.config
        h, w = self.size
        signal = np.zeros((h, w), dtype=np.float32)
        mask = np.zeros((h, w), dtype=bool)
        targets: list[SyntheticTarget] = []
        a_min, a_max = cfg.area_range
        for _ in range(self._num_targets(rng)):
            for _attempt in range(30):
                profile, s_u, s_v, theta = self._target_shape(rng)
                reach = int(math.ceil(3.5 * max(s_u, s_v))) + 1
                if 2 * reach + 1 >= min(h, w):
                    continue
                cy = rng.integers(reach, h - reach) + rng.uniform(-0.5, 0.5)
                cx = rng.integers(reach, w - reach) + rng.uniform(-0.5, 0.5)
                win, (ys, xs) = self._window(cy, cx, reach)
                u = (xs - cx) * math.cos(theta) + (ys - cy) * math.sin(theta)
                v = -(xs - cx) * math.sin(theta) + (ys - cy) * math.cos(theta)
                prof = np.exp(-0.5 * ((u / s_u) ** 2 + (v / s_v) ** 2))
                prof = (prof / prof.max()).astype(np.float32)
                tmask = prof >= cfg.mask_fraction
                area = int(tmask.sum())
                if not a_min <= area <= a_max or label_targets(tmask)[1] != 1:
                    continue
                rows, cols = np.nonzero(tmask)
                r0, r1 = win[0].start + rows.min(), win[0].start + rows.max() + 1
                c0, c1 = win[1].start + cols.min(), win[1].start + cols.max() + 1
                if occupied[max(r0 - 3, 0):r1 + 3, max(c0 - 3, 0):c1 + 3].any():
                    continue
                iy, ix = int(round(cy)), int(round(cx))
                local = scene[max(iy - 10, 0):iy + 11, max(ix - 10, 0):ix + 11]
                clutter = math.sqrt(float(local.var()) + noise_std ** 2)
                scr = _log_uniform(rng, *cfg.scr_range)
                amp = min(scr * clutter, max(0.98 - float(local.max()), 0.01))
                signal[win] += amp * prof
                mask[win] |= tmask
                occupied[r0:r1, c0:c1] |= True
                targets.append(SyntheticTarget((float(cy), float(cx)), (s_u, s_v), float(theta),
                                               profile, float(amp), float(amp / clutter), area))
                break
        return signal, mask, targets

    # ---------------------------------------------------------------- export
    def write(self, root: str | os.PathLike, name: str = "Synthetic", split: str | None = None,
              test_fraction: float = 0.5) -> Path:
        """Write the images in the BasicIRSTD layout under ``root/name`` and return that folder.

        Images are 8-bit gray PNGs (``round(255 x)``), masks {0, 255} PNGs, split files
        ``img_idx/{train,test}_<name>.txt`` (LF, final newline). With ``split=None`` the first
        ``round((1 - test_fraction) n)`` images are train and the rest test; with ``split="train"``
        (or any split name) all images go to that one split file, which is overwritten, so a
        train and a test generator can be written into the same folder.
        """
        folder = Path(root).expanduser() / name
        for sub in ("images", "masks", "img_idx"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for i in range(len(self)):
            s = self[i]
            _write_png(folder / "images" / f"{s.name}.png",
                       np.round(s.image * 255.0).astype(np.uint8))
            _write_png(folder / "masks" / f"{s.name}.png", s.mask.astype(np.uint8) * 255)
        if split is None:
            n_train = int(round((1.0 - test_fraction) * len(self)))
            lists = {"train": self.names[:n_train], "test": self.names[n_train:]}
        else:
            lists = {split: list(self.names)}
        for part, names in lists.items():
            text = "".join(f"{n}\n" for n in names)
            atomic_write_bytes(folder / "img_idx" / f"{part}_{name}.txt", text.encode())
        return folder

    def __repr__(self) -> str:
        return (f"SyntheticSirst({self.num_images} images, size={self.size}, seed={self.seed}, "
                f"offset={self.offset})")


def _write_png(path: Path, arr: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8)).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
