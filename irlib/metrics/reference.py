"""A deliberately plain per-threshold loop in the BasicIRSTD style, as an oracle.

For each threshold it binarises the map, labels prediction and mask with
``skimage.measure.label(connectivity=2)``, walks ``regionprops`` centroids with the greedy
``distance < 3`` rule and removes matched regions from a Python list: the way the field's
reference harness (BasicIRSTD ``metrics.py``: ``mIoU`` and ``PD_FA``) counts. It is slow on
purpose and shares no code with the fast path, so tests and ``benchmarks/bench_metrics.py`` can
check one against the other. Written for irlib; no code was copied from BasicIRSTD.
"""

from __future__ import annotations

import numpy as np
from skimage import measure


def reference_image(prob: np.ndarray, mask: np.ndarray, thresholds, *, distance: float = 3.0,
                    connectivity: int = 8, dnanet_area_bug: bool = False) -> dict[str, np.ndarray]:
    """Per-threshold tp, fp, hits and false-alarm pixels of one image, the slow way."""
    conn = 2 if connectivity == 8 else 1
    gt_regions = measure.regionprops(measure.label(mask.astype(np.int64), connectivity=conn))
    K = len(thresholds)
    out = {k: np.zeros(K, dtype=np.int64) for k in ("tp", "fp", "hits", "fa")}
    p64 = prob.astype(np.float64)
    for k, t in enumerate(thresholds):
        pred = p64 > float(t)
        out["tp"][k] = np.count_nonzero(pred & mask)
        out["fp"][k] = np.count_nonzero(pred & ~mask)
        regions = measure.regionprops(measure.label(pred.astype(np.int64), connectivity=conn))
        all_areas = [r.area for r in regions]
        pool = list(regions)
        matched_areas, matched_pixels, hits = [], 0, 0
        for g in gt_regions:
            gc = np.array(g.centroid)
            for j, r in enumerate(pool):
                if np.linalg.norm(np.array(r.centroid) - gc) < distance:
                    hits += 1
                    matched_areas.append(r.area)
                    matched_pixels += r.area
                    del pool[j]
                    break
        out["hits"][k] = hits
        if dnanet_area_bug:
            out["fa"][k] = sum(a for a in all_areas if a not in matched_areas)
        else:
            out["fa"][k] = int(pred.sum()) - matched_pixels
    return out


def reference_metrics(probs, masks, thresholds, **kw) -> dict[str, np.ndarray]:
    """Pooled IoU, Pd and Fa per threshold over a set, from :func:`reference_image`."""
    tp = fp = fn = hits = fa = 0
    targets = pixels = 0
    for p, m in zip(probs, masks):
        r = reference_image(p, m, thresholds, **kw)
        tp, fp, hits, fa = tp + r["tp"], fp + r["fp"], hits + r["hits"], fa + r["fa"]
        fn = fn + (int(m.sum()) - r["tp"])
        targets += int(measure.label(m.astype(np.int64), connectivity=2 if kw.get(
            "connectivity", 8) == 8 else 1).max())
        pixels += m.size
    return {"IoU": tp / np.maximum(tp + fp + fn, 1), "Pd": hits / max(targets, 1),
            "Fa": fa / pixels, "tp": tp, "fp": fp, "hits": hits, "fa": fa}
