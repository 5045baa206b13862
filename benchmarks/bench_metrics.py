"""Speed and agreement of irlib.metrics on the NUAA-SIRST 50:50 test set (214 native images).

Timed: the standard metrics at 0.5 (SirstMetrics) plus a 100-threshold sweep and its HSE
(ThresholdSweep + hse), both on maps computed beforehand. Then the same maps go through a plain
BasicIRSTD-style loop (skimage.measure.label + regionprops per threshold,
irlib.metrics.reference); the script prints both timings, the ratio and whether every per-image,
per-threshold count agrees, and exits 1 when they do not. Exits 0 with a message when the
data are absent.

    python benchmarks/bench_metrics.py                      # noisy masks, full reference loop
    python benchmarks/bench_metrics.py --maps tophat        # a classical detector's maps
    python benchmarks/bench_metrics.py --ref-images 40      # reference loop on the first 40 only

Maps: ``noisy`` (default) are seeded network-like versions of the masks (see
:func:`noisy_masks`); ``tophat``/``maxmedian``/``mpcm`` are the classical detectors of
irlib.baselines.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np


def noisy_masks(masks: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """Seeded network-like maps from the masks (a stand-in for a trained model's output).

    ``p = sigmoid(logit)`` with ``logit = -9 + 1.8 n + a g + clutter``: ``n`` spatially
    correlated unit noise (Gaussian-filtered, sigma 1.5), ``g`` the mask blurred (sigma 0.8) and
    scaled to peak 1 with a per-image gain ``a`` in [9, 15], ``clutter`` 0-4 Gaussian blobs
    (sigma 1.2) of height 4-11 at random places. Background sits near 1e-4 as for a sigmoid
    network; targets are soft-edged; clutter makes false alarms that come and go with t.
    """
    from scipy import ndimage as ndi
    from scipy.special import expit

    rng = np.random.default_rng(seed)
    out = []
    for m in masks:
        g = ndi.gaussian_filter(m.astype(np.float64), 0.8)
        g /= max(float(g.max()), 1e-6)
        n = ndi.gaussian_filter(rng.standard_normal(m.shape), 1.5)
        n /= max(float(n.std()), 1e-6)
        blobs = np.zeros(m.shape)
        for _ in range(rng.integers(0, 5)):
            blobs[rng.integers(0, m.shape[0]), rng.integers(0, m.shape[1])] = rng.uniform(4, 11)
        clutter = ndi.gaussian_filter(blobs, 1.2) * (2 * np.pi * 1.2 ** 2)
        logit = -9.0 + 1.8 * n + rng.uniform(9, 15) * g + clutter
        out.append(expit(logit).astype(np.float32))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--maps", default="noisy", choices=["tophat", "maxmedian", "mpcm", "noisy"])
    ap.add_argument("--root", default=None, help="data root (default: irlib.paths.data_root())")
    ap.add_argument("--thresholds", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3, help="fast path: best of N runs")
    ap.add_argument("--ref-images", type=int, default=None,
                    help="run the slow reference loop on the first N images only")
    args = ap.parse_args(argv)

    from irlib.paths import data_root

    root = data_root(args.root)
    if root is None or not (root / "NUAA-SIRST").is_dir():
        print(f"SKIP: NUAA-SIRST not found under {root}; set IRLIB_DATA or pass --root")
        return 0

    from irlib import baselines
    from irlib.data import open_dataset
    from irlib.metrics import SirstMetrics, ThresholdSweep, default_thresholds, hse
    from irlib.metrics.components import label
    from irlib.metrics.reference import reference_image

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = open_dataset("NUAA-SIRST", split="test", root=root, on_size_mismatch="resize_mask")
        samples = [ds[i] for i in range(len(ds))]
    resized = [w for w in caught if "resiz" in str(w.message).lower()]
    masks = [s.mask for s in samples]
    names = [s.name for s in samples]
    t0 = time.perf_counter()
    if args.maps == "noisy":
        maps = noisy_masks(masks)
    else:
        fn = {"tophat": baselines.top_hat, "maxmedian": baselines.max_median,
              "mpcm": baselines.mpcm}[args.maps]
        maps = [fn(s.image) for s in samples]
    t_maps = time.perf_counter() - t0
    pixels = sum(m.size for m in masks)
    targets = sum(label(m)[1] for m in masks)
    print(f"NUAA-SIRST test: {len(samples)} images, {pixels / 1e6:.2f} Mpx, {targets} targets; "
          f"{len(resized)} mask(s) resized to their image by the loader")
    print(f"maps: {args.maps} ({t_maps:.2f} s to compute, not timed)")
    grid = default_thresholds(args.thresholds)

    def fast(ps, ms, ns):
        std = SirstMetrics(threshold=0.5)
        sw = ThresholdSweep(grid)
        for p, m, n in zip(ps, ms, ns):
            std.update(p, m, name=n)
            sw.update(p, m, name=n)
        counts = sw.counts()
        return std, counts, hse(counts)

    times = []
    for _ in range(max(args.repeats, 1)):
        t0 = time.perf_counter()
        std, counts, score = fast(maps, masks, names)
        times.append(time.perf_counter() - t0)
    t_fast = min(times)
    r = std.compute()
    print(f"fast: standard @0.5 + {grid.size}-threshold sweep + HSE: {t_fast:.3f} s "
          f"(best of {len(times)}: {', '.join(f'{t:.3f}' for t in times)})"
          f"  -> {'under' if t_fast < 2 else 'OVER'} the 2 s target")
    print(f"  @0.5: IoU {100 * r['IoU']:.2f}  nIoU {100 * r['nIoU']:.2f}  Pd {100 * r['Pd']:.2f}  "
          f"Fa {1e6 * r['Fa']:.2f} x1e-6")
    print(f"  HSE {score.score:.4f} (pixel {score.pixel:.4f}, target {score.target:.4f})")

    n_ref = len(maps) if args.ref_images is None else min(args.ref_images, len(maps))
    ok = True
    t0 = time.perf_counter()
    ref = [reference_image(maps[i], masks[i], grid) for i in range(n_ref)]
    ref05 = [reference_image(maps[i], masks[i], [0.5]) for i in range(n_ref)]
    t_ref = time.perf_counter() - t0
    for i in range(n_ref):
        for key in ("tp", "fp", "hits", "fa"):
            if not np.array_equal(getattr(counts, key)[i], ref[i][key]):
                ok = False
                print(f"  MISMATCH {names[i]} {key}: fast {getattr(counts, key)[i][:8]}... "
                      f"reference {ref[i][key][:8]}...")
        rec = std.records[i]
        if (rec.inter, rec.hits, rec.fa_pixels) != (ref05[i]["tp"][0], ref05[i]["hits"][0],
                                                    ref05[i]["fa"][0]):
            ok = False
            print(f"  MISMATCH {names[i]} @0.5: fast {rec} reference {ref05[i]}")
    if n_ref < len(maps):
        t0 = time.perf_counter()
        fast(maps[:n_ref], masks[:n_ref], names[:n_ref])
        t_fast_sub = time.perf_counter() - t0
    else:
        t_fast_sub = t_fast
    print(f"reference (skimage label + regionprops per threshold, BasicIRSTD style) on {n_ref} "
          f"images: {t_ref:.2f} s vs fast {t_fast_sub:.3f} s on the same images -> "
          f"{t_ref / t_fast_sub:.0f}x")
    print(f"agreement: {'all per-image counts identical' if ok else 'FAILED'} "
          f"({n_ref} images x {grid.size} thresholds: tp, fp, hits, fa; and @0.5)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
