"""How a command edits `.scout/settings.json`: the file and catalog it reads, the schema and live
checks an edit must pass, old entries written migrated, and the locked, validated, atomic edit
itself (grambot.config.edit)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from grambot.cli.common import fail
from grambot.config.names import entry_path

if TYPE_CHECKING:
    from grambot.config.catalog import PluginCatalog
    from grambot.config.descriptor import PluginDescriptor
    from grambot.config.edit import SettingsEdit
    from grambot.config.settings import EngineSettings
    from grambot.contract.definition import Plugin
    from grambot.errors import Problem


def read_settings(workspace: Path) -> EngineSettings:
    from grambot.config.settings import load_settings
    from grambot.errors import SettingsError

    try:
        return load_settings(workspace)
    except SettingsError as exc:
        fail(f"{exc}\nfix the settings file first")


def catalog_of(settings: EngineSettings) -> PluginCatalog:
    from grambot.cli.plugin_info import catalog_for

    return catalog_for(settings)


def descriptor_of(catalog: PluginCatalog, plugin_id: str) -> PluginDescriptor:
    descriptor = catalog.get(plugin_id)
    if descriptor is None:
        from grambot.errors import did_you_mean

        known = ", ".join(catalog.ids()) or "none"
        fail(
            f"no plugin with id {plugin_id!r}{did_you_mean(plugin_id, catalog.ids())}; available "
            f"plugins: {known} (see `grambot plugins`)"
        )
    return descriptor


def schema_check(
    catalog: PluginCatalog, instance_ids: set[str]
) -> Any:  # Callable[[EngineSettings], list[Problem]]
    from grambot.cli.plugin_info import read_plugin
    from grambot.contract.definition import migrate_settings, validate_settings
    from grambot.errors import MigrationError, PluginUnreadable, Problem, SettingsInvalid

    def check(settings: EngineSettings) -> list[Problem]:
        problems = []
        for config in settings.instances:
            if config.instance_id.lower() not in instance_ids:
                continue
            where = f"{config.json_path}.settings"
            descriptor = catalog.get(config.plugin_id)
            if descriptor is None:
                problems.append(
                    Problem(
                        settings.path,
                        f"{config.json_path}.pluginId",
                        f"no plugin with id {config.plugin_id!r}",
                    )
                )
                continue
            try:
                definition = read_plugin(descriptor)
                data = migrate_settings(
                    definition, config.settings, config.settings_version, config.json_path
                )
                validate_settings(definition.settings_schema, data, where)
            except PluginUnreadable as exc:
                problems.append(Problem(descriptor.entry_path, "", str(exc)))
            except (SettingsInvalid, MigrationError) as exc:
                problems.append(Problem(settings.path, "", str(exc)))
        return problems

    return check


def live_check_of(workspace: Path, instance_id: str, secrets: dict[str, str]) -> Any:
    """A check of the edited file: the entry of `instance_id` checked live before writing."""
    from grambot.errors import Problem

    def check(settings: EngineSettings) -> list[Problem]:
        from grambot.cli.workspace import live_check

        result = live_check(
            workspace.resolve(), instance_id, settings=settings, secrets=secrets or None
        )
        if result.ok:
            click.echo(str(result))
            return []
        return [Problem(settings.path, "", f"check failed: {result}")]

    return check


def persist_migration(
    doc: SettingsEdit, entry: dict[str, Any], definition: Plugin, index: int
) -> None:
    """A CLI edit of an old entry writes it migrated (the previous file backed up)."""
    from grambot.cli.workspace import backup_settings, migrate_entry
    from grambot.errors import EditRefused, MigrationError

    if entry.get("settingsVersion", 1) == definition.settings_version:
        return
    backup_settings(doc)
    try:
        migrate_entry(entry, definition, entry_path(index))
    except MigrationError as exc:
        raise EditRefused(f"refused, nothing written: {exc}") from None


def edit_settings(
    workspace: Path,
    change: Any,
    *,
    catalog: PluginCatalog | None,
    ids: set[str],
    live: Any = None,
) -> Any:
    from grambot.config.edit import edit_settings
    from grambot.errors import EditRefused, SettingsError

    lowered = {i.lower() for i in ids}
    schema = schema_check(catalog, lowered) if catalog is not None else None

    def check(settings: EngineSettings) -> list[Problem]:
        problems = list(schema(settings)) if schema is not None else []
        if not problems and live is not None:  # a live check only of an edit that validates
            problems += live(settings)
        return problems

    try:
        return edit_settings(workspace, change, check=check, touched=lambda _doc: lowered)
    except EditRefused as exc:
        fail(str(exc))
    except SettingsError as exc:
        fail(f"{exc}\nfix the settings file first; nothing was written")
