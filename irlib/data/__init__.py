"""SIRST datasets: readers for the real layouts, the synthetic default data, transforms,
torch wrapping, point labels and statistics. Rules and measured numbers: ``docs/data.md``.

``irlib.data.torchdata`` is not imported here so that the data tools work without loading torch.
"""

from irlib.data.catalog import (KNOWN_DATASETS, REFERENCE_NORMALIZATION, SYNTHETIC_SPLITS,
                                available_datasets, open_dataset, reference_normalization, split_sizes)
from irlib.data.components import count_targets, label_targets
from irlib.data.io import read_image, read_mask
from irlib.data.layouts import list_splits
from irlib.data.points import centroid_points, coarse_points, points_to_mask
from irlib.data.reader import MaskResizedWarning, SirstDataset
from irlib.data.sample import Sample
from irlib.data.stats import DatasetStats, dataset_stats
from irlib.data.synthetic import SyntheticConfig, SyntheticSirst, SyntheticTarget
from irlib.data.transforms import JointAugment, crop_to, pad_to_multiple

__all__ = [
    "KNOWN_DATASETS", "REFERENCE_NORMALIZATION", "SYNTHETIC_SPLITS", "DatasetStats", "JointAugment", "MaskResizedWarning",
    "Sample",
    "SirstDataset", "SyntheticConfig", "SyntheticSirst", "SyntheticTarget", "available_datasets",
    "centroid_points", "coarse_points", "count_targets", "crop_to", "dataset_stats",
    "label_targets", "list_splits", "open_dataset", "pad_to_multiple", "points_to_mask",
    "read_image", "read_mask", "reference_normalization", "split_sizes",
]


def __getattr__(name: str):
    if name == "SirstTorchDataset":
        from irlib.data.torchdata import SirstTorchDataset

        return SirstTorchDataset
    raise AttributeError(f"module 'irlib.data' has no attribute {name!r}")
