"""Shared fixtures: where ../shared/data lives, and skipping cleanly when it does not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ROBUSTEVAL_SHARED_DATA", REPO.parent / "shared" / "data"))


def _need(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.is_dir():
        pytest.skip(f"{path} not present (ImageNet images are never committed)")
    return path


@pytest.fixture(scope="session")
def val1300() -> Path:
    """../shared/data/imagenet-val-1300 (227x227 JPEGs + labels.csv)."""
    return _need("imagenet-val-1300")


@pytest.fixture(scope="session")
def sample1000() -> Path:
    """../shared/data/imagenet-sample-1000 (one native-size image per class)."""
    return _need("imagenet-sample-1000")


@pytest.fixture(scope="session")
def mvh16() -> Path:
    """../shared/data/modelvshuman-16class (edges and filled silhouettes)."""
    return _need("modelvshuman-16class")
