"""Shared fixtures (what they build on is in tests/helpers.py): a temporary workspace whose
pluginDirs point at tests/fixtures/plugins, an engine on it, the --slow option, the package
as users get it."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from grambot.bot import Bot
from grambot.engine import Engine
from tests import isolation
from tests.helpers import REPO, Dists, Workspace, started_engine


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


@pytest.fixture
async def engine(workspace: Workspace) -> AsyncIterator[Engine]:
    async with started_engine(workspace) as eng:
        yield eng


@pytest.fixture
async def retrying(workspace: Workspace) -> AsyncIterator[Engine]:
    """An engine that retries failed loads (the `engine` fixture does not: no timer fires)."""
    async with started_engine(workspace, retries=True) as eng:
        yield eng


@pytest.fixture
def keep_root_logging() -> Iterator[None]:
    """For tests that run the CLI in-process: it configures the root logger as `grambot run`
    does, which must not leak into the next test's logging (caplog, pytest's own handlers)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def bot(engine: Engine) -> Bot:
    """The bot attached to `engine`."""
    assert isinstance(engine.responder, Bot)
    return engine.responder


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow",
        action="store_true",
        default=False,
        help="run tests marked slow, and the hypothesis tests with many more examples",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--slow"):
        # Read by tests that size themselves (tests/reliability/evidence.py: slow_mode()).
        os.environ["GRAMBOT_SLOW"] = "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow") or os.environ.get("GRAMBOT_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# The repository's example workspace is off limits (tests/isolation.py): the tests run with the
# current folder in a temporary one, and a test that used the example's .scout/ fails.
@pytest.fixture(autouse=True, scope="session")
def _cwd_outside_the_repository(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("cwd"))
        yield


@pytest.fixture(autouse=True)
def _example_workspace_untouched() -> Iterator[None]:
    yield
    touched = isolation.take_touched()
    assert not touched, f"the test used the repository's example workspace: {touched}"


# -- the package as users get it ---------------------------------------------------------------


@pytest.fixture(scope="session")
def grambot_dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """The sdist and the wheel of this checkout, built once a session with `python -m build
    --no-isolation` (no network): the wheel is built from the sdist, so it holds what a user
    gets, never a stale file of an in-tree build/ folder."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("dists")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (sdist,) = out.glob("grambot-*.tar.gz")
    (wheel,) = out.glob("grambot-*.whl")
    return Dists(sdist, wheel)
