"""Shared fixtures: the real-data root (skipped cleanly when absent) and small CPU settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from irlib.paths import data_root

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Root holding NUAA-SIRST/ and NUDT-SIRST/; the test is skipped when it is not there."""
    root = data_root()
    if root is None or not root.is_dir():
        pytest.skip("real datasets not found: set IRLIB_DATA to the folder holding NUAA-SIRST/ "
                    "and NUDT-SIRST/ (CI uses ../shared/data)")
    return root


@pytest.fixture
def nuaa_root(real_data: Path) -> Path:
    path = real_data / "NUAA-SIRST"
    if not path.is_dir():
        pytest.skip(f"NUAA-SIRST not found under {real_data}")
    return path


@pytest.fixture
def nudt_root(real_data: Path) -> Path:
    path = real_data / "NUDT-SIRST"
    if not path.is_dir():
        pytest.skip(f"NUDT-SIRST not found under {real_data}")
    return path
