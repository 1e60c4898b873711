"""The Engine owns its wiring: what every load reads changes only through `Engine.apply` (and
a rescan); the catalog is rescanned by one rule; the `secrets` key is applied there too."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import pytest

from grambot.core.instance import InstanceState
from grambot.engine import Engine
from grambot.secrets.backends import SecretsConfig, SelectedSecretsStore
from grambot.secrets.store import FileSecretsStore, SecretsStore
from tests.helpers import FIXTURE_PLUGINS, Workspace, entry


async def test_services_are_frozen_and_read_what_the_engine_applied(
    engine: Engine, workspace: Workspace
) -> None:
    services = engine.manager.services
    with pytest.raises(dataclasses.FrozenInstanceError):
        services.timeouts = services.timeouts  # type: ignore[misc]
    await engine.apply(workspace.write([entry("a")], timeouts={"unload": 0.3}, extra=1))
    assert services.timeouts.unload == 0.3
    assert services.engine_settings["extra"] == 1
    assert services.catalog is engine.catalog and "probe" in services.catalog.ids()


async def test_a_plugin_dir_that_appears_is_scanned_at_the_next_apply(
    engine: Engine, workspace: Workspace, tmp_path: Path
) -> None:
    later = tmp_path / "later"  # missing at the first apply
    dirs = [str(FIXTURE_PLUGINS), str(later)]
    settings = workspace.write([entry("a"), entry("t", "twin")], pluginDirs=dirs)
    await engine.apply(settings)
    assert engine.state_of("a") is InstanceState.LOADED
    assert engine.state_of("t") is InstanceState.FAILED  # no plugin twin (yet)
    twin = later / "twin"
    shutil.copytree(FIXTURE_PLUGINS / "probe", twin)
    manifest = json.loads((twin / "plugin.json").read_text())
    (twin / "plugin.json").write_text(json.dumps({**manifest, "id": "twin"}))
    await engine.apply(workspace.write([entry("a"), entry("t", "twin")], pluginDirs=dirs))
    assert engine.state_of("t") is InstanceState.LOADED


def _switchable(root: Path, seen: list[str]) -> SelectedSecretsStore:
    def opener(config: SecretsConfig) -> SecretsStore:
        return FileSecretsStore(root / f"{config.backend}.json")

    return SelectedSecretsStore(opener, on_select=lambda: seen.append("switched"))


async def test_apply_chooses_the_secrets_backend(
    workspace: Workspace, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    switched: list[str] = []
    store = _switchable(tmp_path, switched)
    engine = Engine(workspace.root, secrets=store, builtin_dir=None, entry_points=False)
    await engine.event_engine.start()
    try:
        await engine.apply(workspace.write([]))
        assert store.config.backend == "file" and switched == []
        await engine.apply(workspace.write([], secrets={"backend": "keyring"}))
        assert store.config == SecretsConfig(backend="keyring")
        assert store.current.path == tmp_path / "keyring.json"  # type: ignore[attr-defined]
        assert switched == ["switched"]
        with caplog.at_level(logging.ERROR, logger="grambot"):
            await engine.apply(workspace.write([], secrets={"backend": "vault"}))
        assert store.config.backend == "keyring" and switched == ["switched"]
        assert "keeping the keyring backend" in caplog.text
    finally:
        await engine.stop(drain_deadline=1.0)


async def test_a_store_the_embedder_chose_is_kept(workspace: Workspace, tmp_path: Path) -> None:
    store = FileSecretsStore(tmp_path / "mine.json")
    engine = Engine(workspace.root, secrets=store, builtin_dir=None, entry_points=False)
    await engine.event_engine.start()
    try:
        await engine.apply(workspace.write([], secrets={"backend": "keyring"}))
        assert engine.secrets is store and engine.manager.services.secrets is store
    finally:
        await engine.stop(drain_deadline=1.0)
