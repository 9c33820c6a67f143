"""Shared pieces of the reliability suite (tests/conftest.py's fixtures apply here too).

Every test module in this folder carries ``pytestmark = pytest.mark.reliability``, so ``pytest -m reliability``
runs the suite alone. Property-based tests call ``hypothesis_examples.add(name)`` once per example; the total
is printed at the end of the run, so the README can say how many bad inputs were tried.
"""

from __future__ import annotations

import collections

import pytest


class ExampleCounter:
    def __init__(self):
        self.counts: collections.Counter = collections.Counter()
        self.outcomes: collections.Counter = collections.Counter()

    def add(self, name: str) -> None:
        """Count one example of the property ``name``."""
        self.counts[name] += 1

    def outcome(self, name: str) -> None:
        """Count how examples ended (shown apart from the total)."""
        self.outcomes[name] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


_COUNTER = ExampleCounter()


@pytest.fixture(scope="session")
def hypothesis_examples() -> ExampleCounter:
    return _COUNTER


def pytest_terminal_summary(terminalreporter):
    if _COUNTER.total:
        terminalreporter.write_sep("-", "reliability: hypothesis examples run")
        for name, n in sorted(_COUNTER.counts.items()):
            terminalreporter.write_line(f"{n:6d}  {name}")
        terminalreporter.write_line(f"{_COUNTER.total:6d}  in all")
        for name, n in sorted(_COUNTER.outcomes.items()):
            terminalreporter.write_line(f"        {n:6d}  {name}")


@pytest.fixture(scope="session")
def reviews_parquet(reviews_small, tmp_path_factory) -> str:
    """reviews_small written once as Parquet, for subprocesses to read."""
    path = tmp_path_factory.mktemp("reviews") / "reviews.parquet"
    reviews_small.write_parquet(path)
    return str(path)
