"""Cross-dataset evaluation (irlib.engine.cross_dataset): rows, normalisation rules, skipped sets."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from irlib.data import open_dataset, reference_normalization
from irlib.engine.cross_dataset import (COLUMNS, TrainedModel, available_test_sets, cross_dataset_matrix,
                                        cross_dataset_table)
from irlib.errors import IrlibInputError
from irlib.models import create_model, save_host


@pytest.fixture(scope="module")
def host() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("acm").eval()


def _user_folder(root: Path, name: str = "MyIR", n: int = 3, size: int = 64) -> Path:
    """A dataset folder in the DNANet layout (images/, masks/, 50_50/test.txt)."""
    folder = root / name
    for sub in ("images", "masks", "50_50"):
        (folder / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = (rng.random((size, size)) * 120 + 40).astype(np.uint8)
        mask = np.zeros((size, size), np.uint8)
        mask[10 + i:14 + i, 20:24] = 255
        Image.fromarray(img).save(folder / "images" / f"{i:03d}.png")
        Image.fromarray(mask).save(folder / "masks" / f"{i:03d}.png")
    (folder / "50_50" / "test.txt").write_text("\n".join(f"{i:03d}" for i in range(n)))
    return folder


def test_one_row_per_model_and_test_set(host, tmp_path):
    user = _user_folder(tmp_path)
    torch.manual_seed(1)
    models = {"a": (host, "synthetic", (0.5, 0.25)),
              "b": TrainedModel(create_model("acm"), "synthetic", (0.3, 0.2))}
    table = cross_dataset_table(models, ["synthetic", str(user)], max_images=2, device="cpu", sweep=False)
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == 4
    assert sorted(zip(table.model, table.tested_on)) == [("a", "MyIR"), ("a", "synthetic"), ("b", "MyIR"),
                                                        ("b", "synthetic")]
    assert (table.n_images == 2).all() and table.skipped.isna().all()
    assert (table.normalization == "train").all()
    assert table.in_domain.tolist() == [t == "synthetic" for t in table.tested_on]
    assert table[table.model == "a"].norm_mean.tolist() == [0.5, 0.5]
    for col in ("IoU", "nIoU", "Pd", "Fa_1e-6"):
        assert table[col].notna().all()
    matrix = cross_dataset_matrix(table, "Fa_1e-6")
    assert matrix.shape == (2, 2) and set(matrix.columns) == {"synthetic", "MyIR"}
    # models trained on different sets: one row each, no made-up (model, training set) pairs
    other = table[table.model == "b"].assign(model="c", trained_on="MyIR")
    matrix = cross_dataset_matrix(pd.concat([table, other], ignore_index=True), "IoU")
    assert list(matrix.index) == [("a", "synthetic", "train"), ("b", "synthetic", "train"), ("c", "MyIR", "train")]
    assert matrix.notna().all().all()


def test_rules_give_different_normalisations(host, tmp_path):
    table = cross_dataset_table({"a": (host, "synthetic", (0.5, 0.25))}, ["synthetic"],
                                normalization=("train", "test"), max_images=2, device="cpu")
    train, test = (table[table.normalization == r].iloc[0] for r in ("train", "test"))
    assert (train.norm_mean, train.norm_std) == (0.5, 0.25)
    images = [open_dataset("synthetic", "test")[i].image for i in range(2)]
    assert test.norm_mean == pytest.approx(np.mean([im.mean() for im in images]), rel=1e-5)
    assert test.norm_std == pytest.approx(np.mean([im.std() for im in images]), rel=1e-5)
    assert test.norm_mean != train.norm_mean and "measured" in test.norm_source
    assert "given with the model" in train.norm_source
    assert not math.isnan(test.HSE)


def test_missing_test_set_is_recorded(host, tmp_path):
    with pytest.warns(UserWarning, match="skipping test set"):
        table = cross_dataset_table({"a": (host, "synthetic", (0.5, 0.25))}, ["synthetic", "NoSuchSet"],
                                    root=tmp_path, max_images=1, device="cpu", sweep=False)
    row = table[table.tested_on == "NoSuchSet"].iloc[0]
    assert "not found" in row.skipped and row.n_images == 0 and math.isnan(row.IoU)
    assert table[table.tested_on == "synthetic"].skipped.isna().all()


def test_available_test_sets_and_model_paths(host, tmp_path):
    user = _user_folder(tmp_path, "MyIR")
    (tmp_path / "junk").mkdir()  # not a dataset
    nosplit = tmp_path / "NoSplit"
    for sub in ("images", "masks"):
        (nosplit / sub).mkdir(parents=True)
    assert available_test_sets(tmp_path) == [str(user)]
    path = save_host(host, tmp_path / "acm.pt")
    table = cross_dataset_table({"saved": (str(path), "NUDT-SIRST")}, root=tmp_path, device="cpu", sweep=False,
                                normalization="test")
    assert table.tested_on.tolist() == ["MyIR"] and table.n_images.tolist() == [3]
    with pytest.warns(UserWarning, match="no test set found"):
        empty = cross_dataset_table({"saved": (str(path), "NUDT-SIRST")}, root=tmp_path / "junk")
    assert empty.empty and list(empty.columns) == list(COLUMNS)


def test_bad_arguments(host):
    with pytest.raises(IrlibInputError, match="normalization"):
        cross_dataset_table({"a": (host, "synthetic", (0.5, 0.25))}, ["synthetic"], normalization="imagenet")
    with pytest.raises(IrlibInputError, match="no BasicIRSTD constants"):
        cross_dataset_table({"a": (host, "synthetic")}, ["synthetic"], max_images=1)
    with pytest.raises(IrlibInputError, match="max_images"):
        cross_dataset_table({"a": (host, "synthetic", (0.5, 0.25))}, ["synthetic"], max_images=0)
    with pytest.raises(IrlibInputError, match="give"):
        cross_dataset_table({"a": host}, ["synthetic"])


def test_real_nuaa_and_nudt(host, real_data):
    sets = [n for n in ("NUAA-SIRST", "NUDT-SIRST") if (real_data / n).is_dir()]
    if len(sets) < 2:
        pytest.skip(f"needs NUAA-SIRST and NUDT-SIRST under {real_data}; found {sets}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NUAA-SIRST Misc_111's resized mask, if among the images
        table = cross_dataset_table({"acm": (host, "NUAA-SIRST")}, sets, root=real_data,
                                    normalization=("train", "test"), max_images=4, device="cpu")
    assert len(table) == 4 and (table.n_images == 4).all() and table.skipped.isna().all()
    nuaa = reference_normalization("NUAA-SIRST")
    nudt = reference_normalization("NUDT-SIRST")
    by = {(r.tested_on, r.normalization): r for r in table.itertuples()}
    assert by["NUDT-SIRST", "train"].norm_mean == pytest.approx(nuaa[0])
    assert by["NUDT-SIRST", "test"].norm_mean == pytest.approx(nudt[0])
    assert by["NUAA-SIRST", "test"].norm_std == pytest.approx(nuaa[1])
    # in-domain, both rules are the same normalisation and so the same numbers
    assert by["NUAA-SIRST", "train"].IoU == by["NUAA-SIRST", "test"].IoU
    assert by["NUAA-SIRST", "train"].in_domain and not by["NUDT-SIRST", "train"].in_domain
