"""Shared fixtures: real data from ../shared/data, tiny settings, throwaway storages."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CIFAR_SUBSET = SHARED_DATA / "cifar10-subset" / "train"
MNIST_RAW = SHARED_DATA / "mnist" / "MNIST" / "raw"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies.db'}"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data sets; a missing folder is a broken checkout, so the tests fail rather than skip."""
    assert CIFAR_SUBSET.is_dir() and MNIST_RAW.is_dir(), f"real data missing under {SHARED_DATA}"
    return SHARED_DATA
