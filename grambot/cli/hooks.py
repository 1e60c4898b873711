"""`grambot check ID` and `grambot migrate [ID]`: the plugin lifecycle hooks from the command
line (docs/hooks.md). `enable --check` and `secrets set --check` use `live_check` too."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from grambot.cli.common import fail, logging_options, setup_logging, workspace_option
from grambot.cli.completion import instance_ids
from grambot.cli.workspace import backup_settings, live_check, migrate_entry
from grambot.config.names import entry_path

if TYPE_CHECKING:
    from grambot.config.edit import SettingsEdit
    from grambot.contract.definition import Plugin


@click.command("check")
@click.argument("instance_id", shell_complete=instance_ids)
@workspace_option
@logging_options("warning")
def check_command(instance_id: str, workspace: Path, log_level: str, log_format: str) -> None:
    """Check an instance live: load it apart from the running engine with its secrets, run its
    plugin's check (a cheap request: getMe, a model list, one search) and unload it. Nothing
    is registered or started. Exit 0 when it works, 1 with the typed reason (auth, network,
    invalid-settings, ...) when it does not."""
    setup_logging(log_level, log_format)
    result = live_check(workspace.resolve(), instance_id)
    if not result.ok:
        fail(f"check failed: {result}")
    click.echo(str(result))


# -- migrations --------------------------------------------------------------------------------


@click.command("migrate")
@click.argument("instance_id", required=False, shell_complete=instance_ids)
@workspace_option
@logging_options("warning")
def migrate_command(
    instance_id: str | None, workspace: Path, log_level: str, log_format: str
) -> None:
    """Write the settings of old entries (all, or INSTANCE_ID) migrated to their plugin's
    current settings version. The engine migrates in memory at every load and never writes
    settings.json itself; this persists it, keeping a copy in .scout/backups/."""
    from grambot.cli.editing import catalog_of, edit_settings, read_settings
    from grambot.cli.plugin_info import read_plugin
    from grambot.config.edit import find_entry
    from grambot.errors import EditRefused, MigrationError, PluginUnreadable

    setup_logging(log_level, log_format)
    settings = read_settings(workspace)
    catalog = catalog_of(settings)
    chosen = [
        c
        for c in settings.instances
        if instance_id is None or c.instance_id.lower() == instance_id.lower()
    ]
    if instance_id is not None and not chosen:
        fail(f"settings.json has no instance {instance_id!r}")
    definitions: dict[str, Plugin] = {}
    for config in chosen:
        descriptor = catalog.get(config.plugin_id)
        if descriptor is None:
            continue
        try:
            definitions[config.instance_id] = read_plugin(descriptor)
        except PluginUnreadable as exc:
            fail(str(exc))
    todo = [
        c
        for c in chosen
        if c.instance_id in definitions
        and c.settings_version != definitions[c.instance_id].settings_version
    ]
    if not todo:
        click.echo("nothing to migrate: every entry is at its plugin's settings version")
        return
    done: list[str] = []

    def change(doc: SettingsEdit) -> Path | None:
        backup = backup_settings(doc)
        for config in todo:
            found = find_entry(doc, config.instance_id)
            if found is None:
                continue
            index, entry = found
            try:
                step = migrate_entry(entry, definitions[config.instance_id], entry_path(index))
            except MigrationError as exc:
                raise EditRefused(f"refused, nothing written: {exc}") from None
            if step is not None:
                done.append(f"{config.instance_id}: settings v{step[0]} → v{step[1]}")
        return backup

    backup = edit_settings(workspace, change, catalog=None, ids={c.instance_id for c in todo})
    for line in done:
        click.echo(line)
    if backup is not None:
        click.echo(f"the previous settings.json is kept as {backup}")
