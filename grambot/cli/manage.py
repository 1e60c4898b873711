"""Management commands: enable, disable, remove, validate, new (`plugins`: grambot.cli.plugins).

They edit `.scout/settings.json` through `grambot.config.edit` (file lock, atomic write, key
order kept, validated first), so they are safe while `grambot run` follows the file: the engine
applies each edit within a moment. Heavy imports stay inside the commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from grambot.cli.common import (
    fail,
    logging_options,
    setup_logging,
    workspace_option,
)
from grambot.cli.completion import instance_ids, plugin_ids
from grambot.cli.editing import (
    catalog_of,
    descriptor_of,
    edit_settings,
    live_check_of,
    persist_migration,
    read_settings,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from grambot.config.catalog import PluginCatalog
    from grambot.config.edit import SettingsEdit
    from grambot.config.settings import EngineSettings
    from grambot.contract.definition import Plugin


# -- enable / disable / remove -----------------------------------------------------------------


@click.command("enable")
@click.argument("plugin_id", shell_complete=plugin_ids)
@click.option("--instance", "instance_id", help="Instance id (default: the plugin id).")
@click.option(
    "--unset",
    "removals",
    multiple=True,
    metavar="KEY",
    help="Remove a setting of the instance (back to its default); a.b reaches in. Repeatable.",
)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="A setting of the instance; VALUE is JSON or a plain string. Repeatable.",
)
@click.option("--no-input", is_flag=True, help="Never prompt (the onboarding hook is skipped).")
@click.option(
    "--check",
    is_flag=True,
    help="Check the instance live with the new settings before writing them (grambot check); "
    "nothing is written if the check fails.",
)
@workspace_option
@logging_options("warning")
def enable_command(
    plugin_id: str,
    instance_id: str | None,
    removals: tuple[str, ...],
    assignments: tuple[str, ...],
    no_input: bool,
    check: bool,
    workspace: Path,
    log_level: str,
    log_format: str,
) -> None:
    """Add an instance of PLUGIN_ID (or enable and update an existing one). PLUGIN_ID may also
    be the id of an existing instance: that instance is enabled and updated.

    On a terminal, the plugin's onboarding hook asks for what it needs; secrets it asks for are
    stored in the instance's secrets, never in settings.json.
    """
    from grambot.cli.plugin_info import read_plugin, text_fields
    from grambot.config.edit import find_entry, merge, parse_assignments, unset
    from grambot.errors import EditRefused, PluginUnreadable

    setup_logging(log_level, log_format)
    settings = read_settings(workspace)
    named = settings.instance(plugin_id) if instance_id is None else None
    if named is not None:  # `grambot enable tg`: the instance tg, whatever its plugin's id
        instance_id, plugin_id = named.instance_id, named.plugin_id
    instance_id = instance_id or plugin_id
    catalog = catalog_of(settings)
    try:
        definition = read_plugin(descriptor_of(catalog, plugin_id))
    except PluginUnreadable as exc:
        fail(str(exc))
    try:
        updates = parse_assignments(assignments, text_fields(definition.settings_schema))
    except EditRefused as exc:
        fail(str(exc))
    existing = settings.instance(instance_id)
    if existing is not None and existing.plugin_id != plugin_id:
        fail(
            f"instance {instance_id!r} already exists with plugin {existing.plugin_id!r}; "
            "choose another id with --instance"
        )

    secrets: dict[str, str] = {}
    interactive = not no_input and sys.stdin.isatty()
    if interactive:
        onboarded, secrets = _onboard(
            workspace,
            definition,
            plugin_id,
            instance_id,
            merge(existing.settings if existing else {}, updates),
        )
        updates = merge(onboarded, updates)  # --set wins over answers

    def change(doc: SettingsEdit) -> str:
        found = find_entry(doc, instance_id)
        if found is None and removals:
            raise EditRefused(f"no instance {instance_id!r} yet: nothing to --unset")
        if found is None:
            doc.plugins.append(
                {
                    "instanceId": instance_id,
                    "pluginId": plugin_id,
                    "enabled": True,
                    "settings": updates,
                }
            )
            return "added"
        index, entry = found
        if entry.get("pluginId") != plugin_id:
            raise EditRefused(
                f"instance {instance_id!r} belongs to plugin "
                f"{entry.get('pluginId')!r}; choose another id with --instance"
            )
        persist_migration(doc, entry, definition, index)
        was = entry.get("enabled", True)
        entry["enabled"] = True
        if updates or removals:
            current = entry.get("settings", {})
            merged = merge(current if isinstance(current, dict) else {}, updates)
            entry["settings"] = unset(merged, removals, f"the settings of {instance_id!r}")
        return "updated" if was is True else "enabled"

    live = live_check_of(workspace, instance_id, secrets) if check else None
    what = edit_settings(workspace, change, catalog=catalog, ids={instance_id}, live=live)
    if secrets:
        _store_secrets(workspace, instance_id, secrets)
    click.echo(
        f"{what} instance {instance_id!r} (plugin {plugin_id!r}) in "
        f"{settings.path}" + (f"; stored secrets: {', '.join(sorted(secrets))}" if secrets else "")
    )
    _note_missing_sdk(plugin_id, catalog)


def _note_missing_sdk(plugin_id: str, catalog: PluginCatalog) -> None:
    """A built-in whose SDK is not installed fails to load until it is (issue 14)."""
    from grambot.kit.sdk import missing_sdk

    descriptor = catalog.get(plugin_id)
    install = missing_sdk(plugin_id) if descriptor and descriptor.source == "builtin" else None
    if install is not None:
        click.echo(f"note: {plugin_id} needs its SDK, which is not installed: {install}", err=True)


def _onboard(
    workspace: Path,
    definition: Plugin,
    plugin_id: str,
    instance_id: str,
    current: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, str]]:
    import asyncio
    import inspect

    from grambot.cli.onboarding import TerminalPrompt

    if definition.onboarding is None:
        return {}, {}
    prompt = TerminalPrompt(instance_id, plugin_id, current, _provided_secrets(instance_id))
    try:
        result = definition.onboarding(prompt)
        if inspect.isawaitable(result):
            result = asyncio.run(_awaited(result))
    except (click.Abort, EOFError, KeyboardInterrupt):
        fail("\naborted; nothing was written")
    except Exception as exc:
        fail(
            f"onboarding of plugin {plugin_id!r} failed: {type(exc).__name__}: "
            f"{_masked(str(exc), prompt.secrets)}; nothing was written"
        )
    if result is None:
        result = {}
    if not isinstance(result, dict):
        fail(
            f"onboarding of plugin {plugin_id!r} must return a dict of settings, "
            f"not {type(result).__name__}"
        )
    return result, prompt.secrets


def _provided_secrets(instance_id: str) -> Callable[[str], tuple[str, str] | None]:
    """key -> (value, where) of the secrets GRAMBOT_SECRET__ variables or GRAMBOT_SECRETS_DIR
    give `instance_id` (onboarding asks for none of them: they cannot be stored)."""
    from grambot.secrets.sources import ExternalSecrets

    external = ExternalSecrets()

    def provided(key: str) -> tuple[str, str] | None:
        found = external.lookup(instance_id, key)
        return (found[0], found[1].where) if found is not None else None

    return provided


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _masked(text: str, secrets: dict[str, str]) -> str:
    for value in secrets.values():
        if len(value) >= 4:
            text = text.replace(value, "***")
    return text


def _store_secrets(workspace: Path, instance_id: str, secrets: dict[str, str]) -> None:
    from grambot.cli.workspace import notify_engine, open_workspace_store

    store = open_workspace_store(workspace)
    for key, value in secrets.items():
        store.set(instance_id, key, value)
    notify_engine(workspace)


@click.command("disable")
@click.argument("instance_id", shell_complete=instance_ids)
@workspace_option
def disable_command(instance_id: str, workspace: Path) -> None:
    """Disable an instance (its entry and settings stay)."""
    from grambot.config.edit import find_entry
    from grambot.errors import EditRefused

    def change(doc: SettingsEdit) -> bool:
        found = find_entry(doc, instance_id)
        if found is None:
            raise EditRefused(_unknown(doc, instance_id))
        _, entry = found
        was = entry.get("enabled", True) is not False
        entry["enabled"] = False
        return was

    changed = edit_settings(workspace, change, catalog=None, ids={instance_id})
    click.echo(
        f"disabled instance {instance_id!r}"
        if changed
        else f"instance {instance_id!r} was already disabled"
    )
    for warning in agent_warnings(read_settings(workspace)):
        click.echo(f"warning: {warning}", err=True)


def agent_warnings(settings: EngineSettings) -> list[str]:
    """The `agent` block names a disabled instance: the bot will answer that it is not loaded."""
    agent, warnings = settings.agent, []
    for key, value in (("inference", agent.inference), ("imageProvider", agent.image_provider)):
        config = settings.instance(value) if value is not None else None
        if config is not None and not config.enabled:
            warnings.append(
                f"agent.{key} names {value!r}, which is disabled: until it is enabled (or "
                f"agent.{key} changed) the bot answers that it is not loaded"
            )
    return warnings


@click.command("remove")
@click.argument("instance_id", shell_complete=instance_ids)
@click.option(
    "--purge",
    is_flag=True,
    help="Also delete its data folder, secrets, store, inbox entries, jobs and conversations.",
)
@workspace_option
def remove_command(instance_id: str, workspace: Path, purge: bool = False) -> None:
    """Remove an instance's entry (its data, secrets and stored state are kept unless --purge)."""
    from grambot.config.edit import find_entry
    from grambot.errors import EditRefused

    def change(doc: SettingsEdit) -> str:
        found = find_entry(doc, instance_id)
        if found is None:
            raise EditRefused(_unknown(doc, instance_id))
        index, entry = found
        del doc.plugins[index]
        return str(entry.get("pluginId"))

    plugin_id = edit_settings(workspace, change, catalog=None, ids=set())
    if purge:  # issue 16: everything kept for it goes too (grambot.cli.state)
        from grambot.cli.workspace import purge_instance

        gone = purge_instance(workspace, instance_id)
        click.echo(
            f"removed instance {instance_id!r} (plugin {plugin_id!r}) and deleted "
            f"{', '.join(gone) or 'nothing else (nothing was kept for it)'}"
        )
        return
    data = workspace / ".scout" / "plugins" / instance_id
    click.echo(
        f"removed instance {instance_id!r} (plugin {plugin_id!r}); kept its data "
        f"({data}) and secrets (`grambot secrets list {instance_id}`)"
    )


def _unknown(doc: SettingsEdit, instance_id: str) -> str:
    from grambot.errors import did_you_mean

    ids = [str(i) for e in doc.plugins if isinstance(e, dict) and (i := e.get("instanceId"))]
    known = ", ".join(ids) or "none"
    return (
        f"no instance {instance_id!r} in {doc.path}; instances: {known}"
        f"{did_you_mean(instance_id, ids)}"
    )


# -- new ---------------------------------------------------------------------------------------


@click.command("new")
@click.argument("plugin_id")
@click.option(
    "--kind",
    type=click.Choice(["connector", "inference", "tool", "image"]),
    default="tool",
    show_default=True,
    help="What the plugin registers.",
)
@click.option("--name", help="Human-readable name (default: from the id).")
@click.option(
    "--package",
    is_flag=True,
    help="Write an installable package (./grambot-<id>/: pyproject, src/, tests/) instead of "
    "a folder in the first pluginDir (docs/plugin-packages.md).",
)
@workspace_option
def new_command(
    plugin_id: str, kind: str, name: str | None, package: bool, workspace: Path
) -> None:
    """Create a working plugin: a folder (plugin.json, plugin.py, a test) in the first
    pluginDir, or with --package an installable package in the current folder."""
    from grambot.cli.scaffold import scaffold, scaffold_package
    from grambot.errors import ScaffoldError

    if package:
        try:
            root = scaffold_package(Path("."), plugin_id, kind, name=name)
        except ScaffoldError as exc:
            fail(str(exc))
        click.echo(f"created {root}/ (pyproject.toml, src/, tests/, README.md)")
        click.echo(
            f"next: pip install -e {root}   # then: grambot plugins (lists {plugin_id}); "
            f"python -m pytest {root}"
        )
        return
    settings = read_settings(workspace)
    catalog = catalog_of(settings)
    if plugin_id in catalog:
        existing = catalog.get(plugin_id)
        assert existing is not None
        fail(f"a plugin with id {plugin_id!r} already exists: {existing.descriptor_path}")
    if not settings.plugin_dirs:
        fail('pluginDirs is empty in settings.json; add a folder, e.g. "pluginDirs": ["plugins"]')
    target = settings.plugin_dirs[0]
    try:
        folder = scaffold(target, plugin_id, kind, name=name)
    except ScaffoldError as exc:
        fail(str(exc))
    test_name = f"test_{folder.name.replace('-', '_')}.py"
    click.echo(f"created {folder}/ (plugin.json, plugin.py, {test_name})")
    where = "" if workspace.resolve() == Path.cwd().resolve() else f" -w {workspace}"
    click.echo(f"next: grambot enable {plugin_id}{where}")
    if kind == "tool":
        click.echo(f"      on the echo model, `!{plugin_id} hello` in `grambot run` calls it")
    click.echo(f"test: python -m pytest {folder}   (pytest: pip install pytest)")
