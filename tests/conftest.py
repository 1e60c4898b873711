"""Shared fixtures: a temporary workspace whose pluginDirs point at tests/fixtures/plugins."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from grambot.bot import Bot, attach_bot
from grambot.config.settings import EngineSettings, load_settings
from grambot.engine import Engine
from tests import isolation

FIXTURE_PLUGINS = Path(__file__).parent / "fixtures" / "plugins"
REPO = Path(__file__).resolve().parent.parent


def entry(
    instance_id: str, plugin_id: str = "probe", enabled: bool = True, **settings: Any
) -> dict[str, Any]:
    return {
        "instanceId": instance_id,
        "pluginId": plugin_id,
        "enabled": enabled,
        "settings": settings,
    }


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.scout = root / ".scout"
        self.scout.mkdir(parents=True, exist_ok=True)
        self.settings_file = self.scout / "settings.json"

    def write(self, plugins: list[dict[str, Any]], **engine_keys: Any) -> EngineSettings:
        data = {"pluginDirs": [str(FIXTURE_PLUGINS)], "plugins": plugins, **engine_keys}
        self.settings_file.write_text(json.dumps(data, indent=2))
        return load_settings(self.root)

    def data_dir(self, instance_id: str) -> Path:
        return self.scout / "plugins" / instance_id

    def calls(self, instance_id: str) -> list[str]:
        log = self.data_dir(instance_id) / "calls.log"
        return log.read_text().split() if log.exists() else []


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


@pytest.fixture
async def engine(workspace: Workspace) -> AsyncIterator[Engine]:
    eng = Engine(workspace.root, builtin_dir=None, entry_points=False)
    attach_bot(eng)
    await eng.event_engine.start()
    try:
        yield eng
    finally:
        await eng.stop(drain_deadline=1.0)


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


class Dists(NamedTuple):
    sdist: Path
    wheel: Path


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
