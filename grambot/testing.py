"""Helpers for testing plugins through the real engine (used by `grambot new`'s test).

async with running_instance(Path(__file__).parent, {"greeting": "hi"}) as engine:
    assert engine.state_of("myplugin") == "loaded"
    tool = engine.registries.tools.get("hello")
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from grambot.engine import Engine

__all__ = ["running_instance"]


@asynccontextmanager
async def running_instance(
    plugin_folder: Path,
    settings: dict[str, Any] | None = None,
    *,
    instance_id: str | None = None,
    workspace: Path | None = None,
) -> AsyncIterator[Engine]:
    """An engine on a temporary workspace running one instance of the plugin in `plugin_folder`.

    The instance id defaults to the plugin id. Events are handled; everything is unloaded and
    stopped on exit.
    """
    with tempfile.TemporaryDirectory(prefix="grambot-test-") as tmp:
        root = _prepare(Path(plugin_folder), settings, instance_id, workspace or Path(tmp))
        engine = Engine(root, builtin_dir=None, entry_points=False)
        await engine.start()
        try:
            yield engine
        finally:
            await engine.stop(drain_deadline=1.0)


def _prepare(
    plugin_folder: Path, settings: dict[str, Any] | None, instance_id: str | None, root: Path
) -> Path:
    folder = plugin_folder.resolve()
    plugin_id = json.loads((folder / "plugin.json").read_text("utf-8"))["id"]
    scout = root / ".scout"
    scout.mkdir(parents=True, exist_ok=True)
    entry = {
        "instanceId": instance_id or plugin_id,
        "pluginId": plugin_id,
        "enabled": True,
        "settings": settings or {},
    }
    (scout / "settings.json").write_text(
        json.dumps({"pluginDirs": [str(folder.parent)], "plugins": [entry]}, indent=2)
    )
    return root
