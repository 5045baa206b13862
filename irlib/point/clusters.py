"""Cluster-level sample reweighting (Yao et al., "dynamic collaborative learning").

Images are grouped by global appearance, without labels, and every group gets one learnable
weight. The pipeline of the released ``utils/generate_cluster_csv.py``:

1. :func:`image_descriptors`: about 50 global statistics per image (intensity, contrast,
   gradient, edges, texture, frequency, noise, structure), with scikit-image / scipy / numpy.
2. :func:`select_features`: drop near-constant descriptors (variance <= 1e-10) and one of every
   pair with ``|corr| >= 0.95`` (the one with the lower variance), strongest pairs first.
3. z-score, PCA to 90 % of the variance (2 to 20 components), k-means (seed, ``n_init=1``).
4. refinement: rank the kept descriptors by mutual information with those clusters
   (+ 1e-6 ANOVA F), keep the top 32, repeat 2-3. ``refine_top=None`` skips it.

The release fixes k = 256 for the 2,755 SIRST3 images; here k scales with the dataset
(:func:`cluster_count`): ``k = round(n / (2755 / 256))``, about 10.8 images per cluster, clamped
to ``[min(2, n), n]``. The release's descriptors that cv2 computes are replaced by the nearest
scikit-image ones (Canny with the release's median-based thresholds but a sigma-1 Gaussian,
Shi-Tomasi corners, Gabor energy as the modulus of the complex response); image width and height,
which the release also clusters on, are left out (they would mostly separate the source datasets).

:class:`ClusterWeights` turns cluster ids into per-sample weights exactly as the release's
``_cluster_weights``: ``r = alpha[c] - mean_batch``, ``r = ln2 tanh(r / ln2)``, ``w = e^r / mean(e^r)``
with the denominator detached, so every weight lies in [0.5, 2] / mean and the batch mean is 1.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import ndimage as ndi
from scipy import signal, stats
from skimage import feature, filters, measure
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.feature_selection import f_classif, mutual_info_classif
from sklearn.preprocessing import StandardScaler
from torch import Tensor, nn

from irlib.errors import IrlibInputError

EPS = 1e-8
REFERENCE_IMAGES = 2755  # SIRST3 train + test, all clustered by the release
REFERENCE_CLUSTERS = 256
IMAGES_PER_CLUSTER = REFERENCE_IMAGES / REFERENCE_CLUSTERS
VARIANCE_THRESHOLD = 1e-10
CORRELATION_THRESHOLD = 0.95
MIN_SIDE = 16


# ----------------------------------------------------------------------------- descriptors
def _as_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim != 2 or min(img.shape) < MIN_SIDE:
        raise IrlibInputError(f"image descriptors need a 2-D gray image of at least {MIN_SIDE}x{MIN_SIDE}, "
                              f"got shape {img.shape}; pass Sample.image (H, W) in [0, 1]")
    if not np.issubdtype(img.dtype, np.floating):
        raise IrlibInputError(f"image descriptors need a float image in [0, 1], got {img.dtype}; "
                              "read it with irlib.data.read_image")
    img = img.astype(np.float64)
    if not np.isfinite(img).all() or img.min() < 0 or img.max() > 1:
        raise IrlibInputError("image descriptors need finite values in [0, 1]; read the image with "
                              "irlib.data.read_image")
    return img


def _entropy(hist: np.ndarray) -> float:
    return float(stats.entropy(hist, base=2)) if hist.sum() > 0 else 0.0


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(x, y, 1)[0])


def _gini(x: np.ndarray) -> float:
    v = np.sort(x.ravel() - x.min())
    total = v.sum()
    if total <= EPS:
        return 0.0
    n = v.size
    return float(2.0 * (np.arange(1, n + 1) * v).sum() / (n * total) - (n + 1.0) / n)


def _intensity(img: np.ndarray, u8: np.ndarray) -> dict[str, float]:
    mean, std = float(img.mean()), float(img.std())
    p05, p25, p50, p75, p95, p99 = np.percentile(img, [5, 25, 50, 75, 95, 99])
    robust = float(stats.median_abs_deviation(img, axis=None, scale="normal")) + EPS
    flat = img.ravel()
    return {"mean": mean, "std": std, "dynamic_range": float(img.max() - img.min()),
            "rms_contrast": std / (mean + EPS), "entropy": float(measure.shannon_entropy(u8, base=2)),
            "p05": float(p05), "p25": float(p25), "p75": float(p75),
            "tail95": float((p95 - p50) / robust), "tail99": float((p99 - p50) / robust),
            "skewness": float(stats.skew(flat)) if std > 0 else 0.0,
            "kurtosis": float(stats.kurtosis(flat)) if std > 0 else 0.0, "gini": _gini(img)}


def _edges(img: np.ndarray, u8: np.ndarray) -> np.ndarray:
    """The release's auto-Canny: thresholds 0.66 / 1.33 x the median gray (0-255 scale)."""
    med = float(np.median(u8))
    low, high = max(0.0, 0.66 * med), min(255.0, 1.33 * med)
    return feature.canny(img * 255.0, sigma=1.0, low_threshold=low, high_threshold=high)


def _box_count_dimension(edges: np.ndarray) -> float:
    h, w = edges.shape
    sizes = [2 ** k for k in range(1, int(np.log2(min(h, w))))]
    if len(sizes) < 2 or not edges.any():
        return 0.0
    counts = []
    for s in sizes:
        blocks = edges[:h // s * s, :w // s * s].reshape(h // s, s, w // s, s)
        counts.append(int(blocks.any(axis=(1, 3)).sum()))
    return _slope(np.log(1.0 / np.asarray(sizes, float)), np.log(np.asarray(counts, float) + EPS))


def _gradient(img: np.ndarray, edges: np.ndarray) -> dict[str, float]:
    gx, gy = ndi.sobel(img, axis=1), ndi.sobel(img, axis=0)
    mag = np.hypot(gx, gy)
    angle = np.mod(np.arctan2(gy, gx), 2 * np.pi)
    hist, _ = np.histogram(angle, bins=36, range=(0, 2 * np.pi), weights=mag)
    ex, ey = np.abs(gx).sum(), np.abs(gy).sum()
    band = ndi.binary_dilation(edges, np.ones((3, 3), bool)) & ~ndi.binary_erosion(edges, np.ones((3, 3), bool))
    return {"laplacian_var": float(ndi.laplace(img).var()), "tenengrad": float((mag ** 2).mean()),
            "grad_mean": float(mag.mean()), "grad_std": float(mag.std()), "grad_orient_entropy": _entropy(hist),
            "edge_anisotropy": float(abs(ex - ey) / (ex + ey + EPS)),
            "edge_band_grad": float(mag[band].mean()) if band.any() else 0.0}


def _structures(img: np.ndarray, edges: np.ndarray) -> dict[str, float]:
    per_mpix = 1e6 / img.size
    corners = feature.corner_peaks(feature.corner_shi_tomasi(img, sigma=1.0), min_distance=3,
                                   threshold_rel=0.01, num_peaks=1000)
    peaks = (img == ndi.maximum_filter(img, size=3)) & (img >= img.mean() + img.std())
    return {"edge_density": float(edges.mean()), "corner_density": len(corners) * per_mpix,
            "peak_density": float(peaks.sum()) * per_mpix, "edge_fractal_dim": _box_count_dimension(edges)}


def _texture(img: np.ndarray, u8: np.ndarray) -> dict[str, float]:
    q = (u8.astype(np.float64) / 255.0 * 31).astype(np.uint8)
    glcm = feature.graycomatrix(q, distances=[1, 2, 4], angles=[0, np.pi / 4, np.pi / 2, 3 * np.pi / 4],
                                levels=32, symmetric=True, normed=True)
    out = {f"glcm_{p}": float(np.nan_to_num(feature.graycoprops(glcm, p)).mean())
           for p in ("contrast", "homogeneity", "energy", "correlation", "entropy")}
    lbp = feature.local_binary_pattern(u8, P=8, R=1, method="uniform")
    hist, _ = np.histogram(lbp, bins=10, range=(0, 10), density=True)
    out.update({"lbp_entropy": _entropy(hist), "lbp_uniformity": float((hist ** 2).sum()),
                "lbp_max_bin": float(hist.max()), "lbp_nonzero_bins": float((hist > 0).sum())})
    energies = np.zeros((4, 2))
    for i, theta in enumerate(np.arange(4) * np.pi / 4):
        for j, wavelength in enumerate((4.0, 8.0)):
            kernel = filters.gabor_kernel(1.0 / wavelength, theta=theta, sigma_x=2.0, sigma_y=4.0)
            energies[i, j] = np.abs(signal.fftconvolve(img, kernel, mode="same")).mean()
    ori = energies.sum(axis=1)
    out.update({"gabor_energy_mean": float(energies.mean()), "gabor_energy_std": float(energies.std()),
                "gabor_anisotropy": float((ori.max() - ori.min()) / (ori.max() + ori.min() + EPS))})
    out["local_contrast"] = float(np.abs(ndi.gaussian_filter(img, 1.5) - ndi.gaussian_filter(img, 7.0)).mean())
    return out


def _frequency(img: np.ndarray) -> dict[str, float]:
    """Radially averaged power spectrum (DC and the first ring dropped), as the release."""
    power = np.abs(np.fft.fftshift(np.fft.fft2(img))) ** 2
    h, w = power.shape
    y, x = np.ogrid[:h, :w]
    radius = np.hypot(y - h // 2, x - w // 2).astype(np.int64).ravel()
    radial = np.bincount(radius, power.ravel()) / np.maximum(np.bincount(radius), 1)
    freq = np.arange(radial.size) / (max(h, w) / 2.0)
    freq, radial = freq[2:], np.clip(radial[2:], EPS, None)
    lo, hi = int(0.1 * freq.size), int(0.9 * freq.size)
    slope = _slope(np.log(freq[lo:hi]), np.log(radial[lo:hi])) if hi > lo + 5 else 0.0
    centroid = float((freq * radial).sum() / radial.sum())
    return {"psd_slope": slope, "psd_hf_ratio": float(radial[freq >= 0.3].sum() / radial.sum()),
            "psd_centroid": centroid,
            "psd_bandwidth": float(np.sqrt(((freq - centroid) ** 2 * radial).sum() / radial.sum())),
            "psd_flatness": float(stats.gmean(radial) / radial.mean())}


def _noise_and_scale(img: np.ndarray, dynamic_range: float) -> dict[str, float]:
    residual = img - ndi.gaussian_filter(img, 1.2)
    mu = ndi.gaussian_filter(img, 7 / 6)
    sd = np.sqrt(np.clip(ndi.gaussian_filter(img * img, 7 / 6) - mu * mu, 0, None))
    mscn = (img - mu) / (sd + 1.0 / 255.0)  # the release's C = 1 on the 0-255 scale
    sigmas = np.array([1.0, 2.0, 4.0, 8.0])
    variances = np.array([ndi.gaussian_filter(img, s).var() for s in sigmas])
    threshold = filters.threshold_otsu(img) if img.max() > img.min() else float(img.min())
    fg = img >= threshold
    w1 = float(fg.mean())
    m0 = float(img[~fg].mean()) if w1 < 1 else 0.0
    m1 = float(img[fg].mean()) if w1 > 0 else 0.0
    return {"noise_sigma": float(stats.median_abs_deviation(residual, axis=None, scale="normal")),
            "illum_nonuniformity": float(ndi.gaussian_filter(img, 21.0).std() / (dynamic_range + EPS)),
            "mscn_mean": float(mscn.mean()), "mscn_var": float(mscn.var()),
            "mscn_kurtosis": float(stats.kurtosis(mscn.ravel())) if mscn.std() > 0 else 0.0,
            "mscn_pair_h": float((mscn[:, :-1] * mscn[:, 1:]).mean()),
            "ms_var_slope": _slope(np.log(sigmas), np.log(variances + EPS)),
            "ms_var_ratio": float((variances[0] + EPS) / (variances[-1] + EPS)),
            "otsu_threshold": float(threshold), "otsu_fg_ratio": w1,
            "otsu_between_var": float(w1 * (1 - w1) * (m1 - m0) ** 2)}


def image_descriptors(image: np.ndarray) -> dict[str, float]:
    """Global statistics of one gray image ``(H, W)`` in [0, 1], by descriptor name (always the same keys)."""
    img = _as_image(image)
    u8 = np.round(img * 255.0).astype(np.uint8)
    edges = _edges(img, u8)
    out = _intensity(img, u8)
    out.update(_gradient(img, edges))
    out.update(_structures(img, edges))
    out.update(_texture(img, u8))
    out.update(_frequency(img))
    out.update(_noise_and_scale(img, out["dynamic_range"]))
    return out


def describe_images(images: Iterable[tuple[str, np.ndarray]]) -> pd.DataFrame:
    """One row of :func:`image_descriptors` per ``(name, image)``, indexed by name (unique)."""
    names, rows = [], []
    for name, image in images:
        names.append(str(name))
        rows.append(image_descriptors(image))
    if len(set(names)) != len(names):
        raise IrlibInputError("image names must be unique: the cluster table is keyed by name")
    return pd.DataFrame(rows, index=pd.Index(names, name="name"))


def dataset_images(dataset: Any) -> Iterable[tuple[str, np.ndarray]]:
    """``(name, image)`` of every image of an irlib dataset; a real dataset's masks are never read."""
    from irlib.data.io import read_image

    for i in range(len(dataset)):
        if hasattr(dataset, "image_path"):
            yield dataset.names[i], read_image(dataset.image_path(i))
        else:
            sample = dataset[i]
            yield sample.name, sample.image


# ----------------------------------------------------------------------------- clustering
def cluster_count(num_images: int, images_per_cluster: float = IMAGES_PER_CLUSTER, min_clusters: int = 2) -> int:
    """k for ``num_images``: ``round(n / images_per_cluster)`` clamped to ``[min(min_clusters, n), n]``.

    The default keeps the release's ratio, 2755 SIRST3 images in 256 clusters (k = 256 there).
    """
    if num_images < 1:
        raise IrlibInputError(f"cannot cluster {num_images} images; give at least one")
    if not images_per_cluster > 0:
        raise IrlibInputError(f"images_per_cluster must be > 0, got {images_per_cluster}")
    k = int(math.floor(num_images / images_per_cluster + 0.5))
    return max(min(int(min_clusters), num_images), min(k, num_images))


def _impute(x: np.ndarray) -> np.ndarray:
    x = np.where(np.isfinite(x), x, np.nan)
    if np.isnan(x).any():
        med = np.nan_to_num(np.nanmedian(x, axis=0))
        x = np.where(np.isnan(x), med[None, :], x)
    return x


def _standardise(x: np.ndarray) -> np.ndarray:
    return np.nan_to_num(StandardScaler().fit_transform(x), nan=0.0, posinf=0.0, neginf=0.0)


def select_features(frame: pd.DataFrame, var_threshold: float = VARIANCE_THRESHOLD,
                    corr_threshold: float = CORRELATION_THRESHOLD) -> list[str]:
    """Descriptor columns kept: variance > ``var_threshold``, and of each pair with
    ``|corr| >= corr_threshold`` (strongest first) the one with the higher variance (release rule)."""
    x = _impute(frame.to_numpy(dtype=np.float64))
    var = x.var(axis=0)
    cols = [c for c, v in zip(frame.columns, var) if v > var_threshold]
    var = var[var > var_threshold]
    if len(cols) <= 1:
        return cols
    corr = np.nan_to_num(np.corrcoef(_standardise(x[:, [frame.columns.get_loc(c) for c in cols]]), rowvar=False))
    i, j = np.triu_indices(len(cols), 1)
    strong = np.abs(corr[i, j]) >= corr_threshold
    order = np.argsort(-np.abs(corr[i, j][strong]), kind="stable")
    keep = np.ones(len(cols), bool)
    for a, b in zip(i[strong][order], j[strong][order]):
        if keep[a] and keep[b]:
            keep[b if var[a] >= var[b] else a] = False
    return [c for c, k in zip(cols, keep) if k]


def pca_embed(z: np.ndarray, variance: float = 0.9, min_components: int = 2, max_components: int = 20,
              seed: int = 1) -> np.ndarray:
    """PCA keeping ``variance`` of the total, with ``min_components..max_components`` components."""
    full = PCA(random_state=seed).fit(z)
    n = int(np.searchsorted(np.cumsum(full.explained_variance_ratio_), variance) + 1)
    n = min(max(min_components, min(n, max_components)), z.shape[0], z.shape[1])
    return PCA(n_components=n, random_state=seed).fit_transform(z)


def _kmeans(frame: pd.DataFrame, k: int, seed: int, n_init: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    cols = select_features(frame)
    if not cols:
        raise IrlibInputError("every image descriptor is constant over these images: there is nothing to "
                              "cluster on; give images that differ")
    z = _standardise(_impute(frame[cols].to_numpy(dtype=np.float64)))
    embedded = pca_embed(z, seed=seed)
    labels = KMeans(n_clusters=k, random_state=seed, n_init=n_init, max_iter=300).fit_predict(embedded)
    return labels.astype(np.int64), z, cols


def _rank(z: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """Mutual information with the clusters + 1e-6 ANOVA F (release ranking), per column of ``z``."""
    if len(np.unique(labels)) < 2:
        return np.zeros(z.shape[1])
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        f_values = np.nan_to_num(f_classif(z, labels)[0], nan=0.0, posinf=0.0, neginf=0.0)
        mi = np.nan_to_num(mutual_info_classif(z, labels, random_state=seed))
    return mi + 1e-6 * f_values


@dataclass(eq=False)
class ClusterTable:
    """One row per image: its name, cluster id (0..num_clusters-1) and descriptors."""

    names: list[str]
    clusters: np.ndarray
    descriptors: pd.DataFrame
    num_clusters: int
    features: list[str] = field(default_factory=list)  # descriptors of the final clustering
    seed: int | None = None

    def __post_init__(self) -> None:
        self.names = [str(n) for n in self.names]
        self.clusters = np.asarray(self.clusters, dtype=np.int64)
        if len(self.names) != len(self.clusters) or len(self.descriptors) != len(self.names):
            raise IrlibInputError(f"ClusterTable: {len(self.names)} names, {len(self.clusters)} cluster ids and "
                                  f"{len(self.descriptors)} descriptor rows must match")
        if len(set(self.names)) != len(self.names):
            raise IrlibInputError("ClusterTable: image names must be unique")
        if len(self.clusters) and (self.clusters.min() < 0 or self.clusters.max() >= self.num_clusters):
            raise IrlibInputError(f"ClusterTable: cluster ids must lie in 0..{self.num_clusters - 1}")
        self.descriptors = self.descriptors.reset_index(drop=True)
        self._index = {n: i for i, n in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def cluster_of(self, name: str) -> int:
        """The cluster id of image ``name``."""
        if name not in self._index:
            raise IrlibInputError(f"image {name!r} is not in the cluster table ({len(self)} images); "
                                  "rebuild the table over the images you train on")
        return int(self.clusters[self._index[name]])

    def ids(self, names: Sequence[str]) -> Tensor:
        """Cluster ids of a batch of image names, as a LongTensor for :class:`ClusterWeights`."""
        return torch.tensor([self.cluster_of(str(n)) for n in names], dtype=torch.long)

    def sizes(self) -> np.ndarray:
        """Images per cluster, length ``num_clusters``."""
        return np.bincount(self.clusters, minlength=self.num_clusters)

    def to_frame(self) -> pd.DataFrame:
        """Columns ``name``, ``cluster`` then the descriptors."""
        head = pd.DataFrame({"name": self.names, "cluster": self.clusters})
        return pd.concat([head, self.descriptors], axis=1)

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_frame` as CSV (floats round-trip exactly); return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.to_frame().to_csv(path, index=False, float_format="%.17g")
        return path

    @classmethod
    def from_csv(cls, path: str | os.PathLike, num_clusters: int | None = None) -> ClusterTable:
        """Read a table written by :meth:`to_csv`; ``num_clusters`` defaults to the largest id + 1."""
        path = Path(path)
        if not path.is_file():
            raise IrlibInputError(f"cluster table not found: {path}; write one with ClusterTable.to_csv")
        frame = pd.read_csv(path, dtype={"name": str}, float_precision="round_trip", keep_default_na=False)
        if "name" not in frame.columns or "cluster" not in frame.columns:
            raise IrlibInputError(f"{path} has columns {list(frame.columns)[:5]}...; a cluster table needs "
                                  "'name' and 'cluster' (written by ClusterTable.to_csv)")
        clusters = frame["cluster"].to_numpy(dtype=np.int64)
        k = int(num_clusters) if num_clusters is not None else (int(clusters.max()) + 1 if len(clusters) else 0)
        descriptors = frame.drop(columns=["name", "cluster"]).apply(pd.to_numeric, errors="coerce")
        descriptors = descriptors.astype(np.float64)
        return cls(frame["name"].tolist(), clusters, descriptors, k)


def cluster_descriptors(descriptors: pd.DataFrame, k: int | None = None, seed: int = 1,
                        refine_top: int | None = 32, n_init: int = 1,
                        images_per_cluster: float = IMAGES_PER_CLUSTER) -> ClusterTable:
    """Cluster images from their descriptors (rows indexed by name, e.g. :func:`describe_images`).

    Args:
        k: number of clusters; ``None`` uses :func:`cluster_count` with ``images_per_cluster``.
        seed: seed of PCA, k-means and the mutual-information ranking (the release uses 1).
        refine_top: re-cluster on the top descriptors by mutual information (32 in the release);
            ``None`` keeps the first clustering.
        n_init: k-means restarts (1 in the release).
    """
    n = len(descriptors)
    if n < 2:
        raise IrlibInputError(f"clustering needs at least 2 images, got {n}")
    k = cluster_count(n, images_per_cluster) if k is None else int(k)
    if not 1 <= k <= n:
        raise IrlibInputError(f"k={k} clusters for {n} images; choose 1 <= k <= {n} (or k=None for the rule)")
    labels, z, cols = _kmeans(descriptors, k, seed, n_init)
    if refine_top is not None and refine_top < len(cols):
        top = np.argsort(-_rank(z, labels, seed), kind="stable")[:int(refine_top)]
        labels, _, cols = _kmeans(descriptors[[cols[i] for i in sorted(top)]], k, seed, n_init)
    return ClusterTable(list(descriptors.index.astype(str)), labels, descriptors, k, cols, seed)


def cluster_dataset(dataset: Any, k: int | None = None, seed: int = 1, **kwargs: Any) -> ClusterTable:
    """Descriptors and clusters of every image of an irlib dataset (labels are never read)."""
    return cluster_descriptors(describe_images(dataset_images(dataset)), k=k, seed=seed, **kwargs)


# ----------------------------------------------------------------------------- weights
class ClusterWeights(nn.Module):
    """Learnable per-cluster sample weights, renormalised within every batch (release rule).

    ``alpha`` (init 0) has one entry per cluster; for a batch with clusters ``c``:
    ``r = alpha[c] - mean(alpha[c])``, ``r = bound * tanh(r / bound)``, ``w = e^r / (mean(e^r) + eps)``
    with the mean in the denominator detached. ``bound = ln 2`` keeps ``e^r`` in [0.5, 2].
    """

    def __init__(self, num_clusters: int, bound: float = math.log(2.0), eps: float = 1e-6) -> None:
        super().__init__()
        if num_clusters < 1:
            raise IrlibInputError(f"num_clusters must be >= 1, got {num_clusters}")
        if not bound > 0:
            raise IrlibInputError(f"bound must be > 0, got {bound}")
        self.num_clusters, self.bound, self.eps = int(num_clusters), float(bound), float(eps)
        self.alpha = nn.Parameter(torch.zeros(self.num_clusters))

    @classmethod
    def from_table(cls, table: ClusterTable, **kwargs: Any) -> ClusterWeights:
        """One weight per cluster of ``table``."""
        return cls(table.num_clusters, **kwargs)

    def forward(self, cluster_ids: Tensor, detach: bool = False) -> Tensor:
        """Weights (B,) for the batch's cluster ids; ``detach`` cuts the gradient to ``alpha``
        (the release's inner loss)."""
        ids = torch.as_tensor(cluster_ids, device=self.alpha.device)
        if ids.dim() != 1 or ids.numel() == 0 or ids.dtype not in (torch.int32, torch.int64):
            raise IrlibInputError(f"cluster_ids must be a non-empty 1-D integer tensor, got {tuple(ids.shape)} "
                                  f"{ids.dtype}; use ClusterTable.ids(names)")
        if int(ids.min()) < 0 or int(ids.max()) >= self.num_clusters:
            raise IrlibInputError(f"cluster ids must lie in 0..{self.num_clusters - 1}, got "
                                  f"{int(ids.min())}..{int(ids.max())}; build the weights from the same table")
        raw = self.alpha[ids.long()]
        if detach:
            raw = raw.detach()
        raw = raw - raw.mean()
        w = torch.exp(self.bound * torch.tanh(raw / self.bound))
        return w / (w.mean().detach() + self.eps)

    def extra_repr(self) -> str:
        return f"num_clusters={self.num_clusters}, bound={self.bound:.4f}"
