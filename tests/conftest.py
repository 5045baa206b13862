"""Shared fixtures: the real-data root (skipped cleanly when absent) and small CPU settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from irlib.paths import data_root

# Tests use small tensors: one thread avoids thread-sync stalls on the shared 2-core CPU.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Root holding NUAA-SIRST/ and NUDT-SIRST/; the test is skipped when it is not there."""
    root = data_root()
    if root is None or not root.is_dir():
        pytest.skip("real datasets not found: set IRLIB_DATA to the folder holding NUAA-SIRST/ "
                    "and NUDT-SIRST/ (CI uses ../shared/data)")
    return root


def _dataset_dir(real_data: Path, name: str) -> Path:
    path = real_data / name
    if not path.is_dir():
        pytest.skip(f"{name} not found under {real_data}")
    return path


@pytest.fixture
def nuaa_root(real_data: Path) -> Path:
    return _dataset_dir(real_data, "NUAA-SIRST")


@pytest.fixture
def nudt_root(real_data: Path) -> Path:
    return _dataset_dir(real_data, "NUDT-SIRST")
