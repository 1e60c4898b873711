"""Fixtures of the reliability tests: the `evidence` recorder and a shared release switch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.evidence import Evidence
from tests.reliability.faults import release_all

_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:  # type: ignore[misc]
    report: pytest.TestReport = yield
    if report.when == "call":
        item.stash[_REPORT] = report
    return report


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> Iterator[Evidence]:
    recorder = Evidence(test=request.node.nodeid)
    yield recorder
    report = request.node.stash.get(_REPORT, None)
    recorder.flush(report.outcome if report is not None else "error")


@pytest.fixture(autouse=True)
def _release_hung_plugins() -> Iterator[None]:
    """Whatever a fault plugin left hanging is let go at the end of each test."""
    yield
    release_all()
