"""What the tests share that is not a fixture: a workspace on tests/fixtures/plugins, settings
entries, and `eventually`, the one way a test waits for something to become true."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, overload

from grambot.config.settings import EngineSettings, load_settings
from grambot.core.failures import Failure
from grambot.engine import Engine

FIXTURE_PLUGINS = Path(__file__).parent / "fixtures" / "plugins"
REPO = Path(__file__).resolve().parent.parent

T = TypeVar("T")


def entry(
    instance_id: str, plugin_id: str = "probe", enabled: bool = True, **settings: Any
) -> dict[str, Any]:
    return {
        "instanceId": instance_id,
        "pluginId": plugin_id,
        "enabled": enabled,
        "settings": settings,
    }


def make_plugin(folder: Path, manifest: dict[str, Any], code: str | None = None) -> Path:
    """A plugin folder: `manifest` as its plugin.json and `code` (by default an execute-style
    echo) as its entry; the plugin.json's path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plugin.json").write_text(json.dumps(manifest))
    (folder / manifest.get("entry", "index.py")).write_text(
        code or "async def execute(inputs, context, config):\n    return inputs\n"
    )
    return folder / "plugin.json"


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


@contextlib.asynccontextmanager
async def started_engine(
    workspace: Workspace, *, bot: bool = True, **options: Any
) -> AsyncIterator[Engine]:
    """An Engine on `workspace` with the fixture plugins only (no built-ins, no entry points),
    the bot attached (unless `bot=False`), its event consumer started, stopped at the end."""
    from grambot.bot import attach_bot

    engine = Engine(workspace.root, builtin_dir=None, entry_points=False, **options)
    if bot:
        attach_bot(engine)
    await engine.event_engine.start()
    try:
        yield engine
    finally:
        await engine.stop(drain_deadline=1.0)


def failure_of(engine: Engine, instance_id: str) -> Failure:
    """The failure `instance_id` is in; a test that expects one fails here if there is none."""
    instance = engine.instance(instance_id)
    assert instance is not None and instance.failure is not None, instance_id
    return instance.failure


def status_of(engine: Engine, instance_id: str, part: str) -> dict[str, Any]:
    """`part` of `instance_id`'s status ("health", "isolation": as status.json shows it)."""
    instance = engine.instance(instance_id)
    assert instance is not None, instance_id
    found: dict[str, Any] = instance.to_status()[part]
    return found


class Dists(NamedTuple):
    sdist: Path
    wheel: Path


# -- waiting -----------------------------------------------------------------------------------


def _describe(predicate: Callable[..., Any]) -> str:
    """The lambda's source where there is one, else its name."""
    name = getattr(predicate, "__qualname__", None) or repr(predicate)
    if not name.endswith("<lambda>"):
        return name
    try:
        source = inspect.getsource(predicate).strip()
    except (OSError, TypeError):
        return name
    start = source.find("lambda")
    return source[start:] if start >= 0 else source


def _timed_out(predicate: Callable[..., Any], timeout: float, what: str, last: object) -> str:
    return (
        f"timed out after {timeout} s waiting for {what or _describe(predicate)}; "
        f"last value: {last!r}"
    )


def eventually(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.01, *, what: str = ""
) -> T:
    """Call `predicate` until it returns something truthy, and return that; raise an
    AssertionError naming `what` (or the predicate) and the last value after `timeout` seconds.
    The predicate is tried once more at the deadline, so a slow machine is not failed early."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(_timed_out(predicate, timeout, what, value))
        time.sleep(interval)


@overload
async def eventually_async(
    predicate: Callable[[], Coroutine[Any, Any, T]],
    timeout: float = ...,
    interval: float = ...,
    *,
    what: str = ...,
) -> T: ...
@overload
async def eventually_async(
    predicate: Callable[[], T],
    timeout: float = ...,
    interval: float = ...,
    *,
    what: str = ...,
) -> T: ...
async def eventually_async(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    interval: float = 0.01,
    *,
    what: str = "",
) -> Any:
    """`eventually` on the running loop: yields to it between tries; a predicate may be a
    coroutine function (its result is awaited)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        value = await result if inspect.isawaitable(result) else result
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(_timed_out(predicate, timeout, what, value))
        await asyncio.sleep(interval)
