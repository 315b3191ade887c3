"""Shared fixtures: where ../shared/data lives, and skips when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CAFTM_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_file(relative: str) -> Path:
    """Path of a file under ../shared/data, or skip the test with a clear reason."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data {relative} absent (looked in {SHARED_DATA}); set CAFTM_SHARED_DATA")
    return path


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data absent (looked in {SHARED_DATA})")
    return SHARED_DATA
