"""What the commands do to a workspace besides editing settings.json: open its secrets store,
tell a running engine, check an entry live, back up and migrate settings, purge an instance.
Heavy imports stay inside the functions (`grambot --help` stays instant)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grambot.cli.common import fail
from grambot.files import write_atomic

if TYPE_CHECKING:
    from grambot.config.edit import SettingsEdit
    from grambot.config.settings import EngineSettings, InstanceConfig
    from grambot.contract.definition import Plugin
    from grambot.engine import CheckResult
    from grambot.secrets.store import SecretsStore

CHANGED_NAME = "secrets.changed"  # touched after a secrets change: a running engine re-reads


def open_workspace_store(workspace: Path) -> SecretsStore:
    """The secrets store settings.json selects (`secrets.backend`), file by default."""
    from grambot.config.settings import load_settings
    from grambot.errors import SettingsError
    from grambot.secrets.backends import open_store, secrets_config

    try:
        settings = load_settings(workspace)
    except SettingsError as exc:
        fail(f"{exc}\ncannot tell which secrets backend to use; fix the settings file first")
    config, problems = secrets_config(settings.raw, settings.path)
    if problems:
        fail("\n".join(str(p) for p in problems))
    return open_store(workspace, config)


def notify_engine(workspace: Path) -> None:
    """Tell a running engine that secrets changed (it watches this file)."""
    from grambot.files import write_atomic

    scout = workspace / ".scout"
    if scout.is_dir():
        write_atomic(scout / CHANGED_NAME, f"{time.time()}\n", fsync=False)


BACKUPS = "backups"


def live_check(
    workspace: Path,
    instance_id: str,
    *,
    settings: EngineSettings | None = None,
    config: InstanceConfig | None = None,
    secrets: Mapping[str, str] | None = None,
) -> CheckResult:
    """Run the live check of one entry in this process (the running engine is not asked)."""
    import asyncio

    from grambot.cli.workspace import open_workspace_store
    from grambot.engine import Engine
    from grambot.errors import SettingsError

    engine = Engine(workspace, secrets=open_workspace_store(workspace))
    try:
        engine.settings = settings if settings is not None else engine.read_settings()
    except SettingsError as exc:
        fail(f"{exc}\nfix the settings file first")
    engine.rescan(engine.settings)
    return asyncio.run(engine.check(instance_id, config=config, secrets=secrets))


def backup_settings(doc: SettingsEdit) -> Path | None:
    """Copy settings.json into .scout/backups/ (before a migration rewrites it)."""
    if not doc.path.exists():
        return None
    folder = doc.path.parent / BACKUPS
    folder.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = folder / f"settings-{stamp}.json"
    write_atomic(target, doc.path.read_bytes(), mode=None)  # whole, or not there at all
    return target


def migrate_entry(
    entry: dict[str, Any], definition: Plugin, json_path: str
) -> tuple[int, int] | None:
    """Bring a settings.json entry (a dict of the document) up to its plugin's settings version,
    in place; returns (from, to), or None when it is current. MigrationError if it cannot."""
    from grambot.contract.definition import migrate_settings

    version = entry.get("settingsVersion", 1)
    target = definition.settings_version
    if version == target:
        return None
    settings = entry.get("settings") or {}
    entry["settings"] = migrate_settings(definition, settings, version, json_path)
    entry["settingsVersion"] = target
    return version, target


def purge_instance(workspace: Path, instance_id: str) -> list[str]:
    """Delete everything kept for `instance_id`: its data folder, its secrets, and in state.db
    its store, inbox entries, conversations, jobs and the bot's reminders in its chats."""
    from grambot.cli.workspace import open_workspace_store
    from grambot.storage import STORAGE_FILE, open_storage

    scout = workspace.resolve() / ".scout"
    done = []
    data = scout / "plugins" / instance_id
    if data.exists():
        shutil.rmtree(data)
        done.append(f"data folder {data}")
    # the store's only: GRAMBOT_SECRET__* and GRAMBOT_SECRETS_DIR are not the workspace's
    opened = open_workspace_store(workspace)
    store = getattr(opened, "inner", opened)
    keys = store.keys(instance_id)
    for key in keys:
        store.delete(instance_id, key)
    if keys:
        done.append(f"{len(keys)} secret(s)")
    if (scout / STORAGE_FILE).exists():
        with open_storage(scout / STORAGE_FILE) as storage:
            removed = storage.purge_instance(instance_id)
        done += [f"{n} {what}" for what, n in removed.items() if n]
    return done
