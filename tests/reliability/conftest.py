"""Shared pieces of the reliability suite (tests/conftest.py's fixtures apply here too).

Every test module in this folder carries ``pytestmark = pytest.mark.reliability``, so ``pytest -m reliability``
runs the suite alone. Property-based tests call ``hypothesis_examples.add(name)`` once per example (the fixture
is in tests/conftest.py, which adds up the workers' counts under pytest-xdist); the total is printed at the end
of the run, so the README can say how many bad inputs were tried.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def reviews_parquet(reviews_small, tmp_path_factory) -> str:
    """reviews_small written once as Parquet, for subprocesses to read."""
    path = tmp_path_factory.mktemp("reviews") / "reviews.parquet"
    reviews_small.write_parquet(path)
    return str(path)
