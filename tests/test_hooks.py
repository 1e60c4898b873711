"""Settings migrations and in-place reconfiguration, through a real engine (the `evolving`
fixture plugin is at settings version 3; see its docstring)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from grambot.engine import Engine
from tests.helpers import Workspace, entry


def _v(instance_id: str, version: int | None, **settings: Any) -> dict[str, Any]:
    item = entry(instance_id, "evolving", **settings)
    if version is not None:
        item["settingsVersion"] = version
    return item


def _seen(workspace: Workspace, instance_id: str) -> list[str]:
    log = workspace.data_dir(instance_id) / "seen.log"
    return log.read_text().splitlines() if log.exists() else []


async def test_old_entries_migrate_in_memory_step_by_step(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(
        workspace.write(
            [_v("one", None, title="a"), _v("two", 2, name="b"), _v("new", 3, name="c")]
        )
    )
    assert _seen(workspace, "one") == ["a green"]  # v1 → v2 (rename) → v3 (the old default)
    assert _seen(workspace, "two") == ["b green"]
    assert _seen(workspace, "new") == ["c blue"]
    one = engine.instance("one")
    assert one is not None and one.to_status()["migrated"] == {"from": 1, "to": 3}
    assert engine.instance("new").to_status()["migrated"] is None  # type: ignore[union-attr]
    # the engine never writes settings.json on its own
    written = json.loads(workspace.settings_file.read_text())["plugins"][0]
    assert written["settings"] == {"title": "a"} and "settingsVersion" not in written


async def test_a_failing_migration_is_typed_and_holds_a_running_instance(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(
        workspace.write([_v("x", None, title="a", explode=True), _v("r", 3, name="r")])
    )
    failed = engine.instance("x")
    assert failed is not None and str(failed.state) == "failed"
    assert failed.failure is not None and failed.failure.kind == "migration-error"
    assert "cannot migrate an exploding entry" in failed.failure.message
    # a running instance whose edit cannot migrate keeps running as it was
    await engine.apply(workspace.write([_v("r", 1, title="r2", explode=True)]))
    running = engine.instance("r")
    assert running is not None and str(running.state) == "loaded"
    assert any("cannot migrate" in p for p in running.held), running.held
    assert _seen(workspace, "r") == ["r blue"]


async def test_an_entry_newer_than_the_plugin_is_refused(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write([_v("future", 7, name="z")]))
    instance = engine.instance("future")
    assert instance is not None and instance.failure is not None
    assert instance.failure.kind == "migration-error"
    assert "version 7" in instance.failure.message and "3" in instance.failure.message


async def test_reconfigure_applies_settings_in_place_or_reloads(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write([_v("p", 3, name="p", reconfigurable=True)]))
    digest = engine.instance("p").to_status()["settingsDigest"]  # type: ignore[union-attr]
    await engine.apply(workspace.write([_v("p", 3, name="p", reconfigurable=True, color="red")]))
    instance = engine.instance("p")
    assert instance is not None and str(instance.state) == "loaded"
    assert _seen(workspace, "p") == ["p blue", "reconfigured red"]  # no second load
    assert instance.to_status()["settingsDigest"] != digest
    assert instance.config.settings["color"] == "red"
    # the hook says no (a new name): a reload as before
    await engine.apply(workspace.write([_v("p", 3, name="q", reconfigurable=True, color="red")]))
    assert _seen(workspace, "p")[-1] == "q red"
    # settings the schema refuses are never offered to the hook: held
    await engine.apply(workspace.write([_v("p", 3, name="q", reconfigurable=True, color=5)]))
    assert any("color" in p for p in engine.instance("p").held)  # type: ignore[union-attr]
    assert _seen(workspace, "p")[-1] == "q red"


def test_grambot_migrate_persists_with_a_backup(tmp_path: Path) -> None:
    from tests.helpers import FIXTURE_PLUGINS

    scout = tmp_path / ".scout"
    scout.mkdir()
    original = {
        "pluginDirs": [str(FIXTURE_PLUGINS)],
        "plugins": [_v("one", None, title="a"), _v("cur", 3, name="c")],
    }
    (scout / "settings.json").write_text(json.dumps(original, indent=2))
    done = subprocess.run(
        [sys.executable, "-m", "grambot", "migrate", "--workspace", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "one: settings v1 → v3" in done.stdout
    plugins = json.loads((scout / "settings.json").read_text())["plugins"]
    assert plugins[0]["settings"] == {"name": "a", "color": "green"}
    assert plugins[0]["settingsVersion"] == 3
    assert plugins[1] == _v("cur", 3, name="c")
    (backup,) = (scout / "backups").iterdir()
    assert json.loads(backup.read_text()) == original
    again = subprocess.run(
        [sys.executable, "-m", "grambot", "migrate", "--workspace", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert again.returncode == 0 and "nothing to migrate" in again.stdout
