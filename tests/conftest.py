"""Shared pytest fixtures.

`shared_data` finds the project's real test files (tokenizers, models,
benchmarks): `$AZR_SHARED_DATA` if set, else `../shared/data` next to the
repository. Tests that need it skip with a clear reason when it is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path | None:
    env = os.environ.get("AZR_SHARED_DATA")
    cand = Path(env) if env else REPO.parent / "shared" / "data"
    return cand if cand.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("real test data not found: set AZR_SHARED_DATA or place it at ../shared/data")
    return d


@pytest.fixture(scope="session")
def redteam_dir() -> Path:
    env = os.environ.get("AZR_REDTEAM")
    d = Path(env) if env else REPO.parent / "shared" / "redteam"
    if not d.is_dir():
        pytest.skip("red-team corpus not found: set AZR_REDTEAM or place it at ../shared/redteam")
    return d
