"""`grambot validate`: check a workspace without loading anything (the agent's tools against
a running engine): problems fail it, warnings (settings keys a plugin would ignore, …) do not."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from grambot.cli.common import EXIT_PROBLEMS, logging_options, setup_logging, workspace_option
from grambot.cli.editing import catalog_of, schema_check
from grambot.cli.manage import agent_warnings
from grambot.config.names import entry_path

if TYPE_CHECKING:
    from grambot.config.catalog import PluginCatalog
    from grambot.config.settings import EngineSettings
    from grambot.errors import Problem


@click.command("validate")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@workspace_option
@logging_options("warning")
def validate_command(workspace: Path, as_json: bool, log_level: str, log_format: str) -> None:
    """Check settings.json, every enabled instance's settings and the plugin descriptors,
    without loading anything (the agent's tools against a running engine). Exit code 1 and a
    list of problems when anything is wrong; warnings (unknown settings keys a plugin ignores,
    …) do not fail it."""
    import json

    from grambot.config.settings import load_settings, settings_path
    from grambot.errors import SettingsError

    setup_logging(log_level, log_format)
    path = settings_path(workspace)
    warnings: list[str] = []
    instances = enabled = 0
    try:
        settings = load_settings(workspace, lenient=True)
    except SettingsError as exc:
        problems = [str(p) for p in exc.problems]
    else:
        problems, warnings = _validate(settings)
        instances, enabled = len(settings.instances), sum(c.enabled for c in settings.instances)
    if as_json:
        report = {
            "ok": not problems,
            "file": str(path),
            "instances": instances,
            "enabled": enabled,
            "problems": problems,
            "warnings": warnings,
        }
        click.echo(json.dumps(report, indent=2))
    else:
        if problems:
            click.echo(f"error: {len(problems)} problem(s):", err=True)
            for text in problems:
                click.echo(f"  {text}", err=True)
        else:
            where = path if path.exists() else f"{path} (missing: no instances)"
            click.echo(f"ok: {where}: {instances} instance(s), {enabled} enabled")
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
    if problems:
        sys.exit(EXIT_PROBLEMS)


def _validate(settings: EngineSettings) -> tuple[list[str], list[str]]:
    """(problems, warnings) of the settings in force."""
    from grambot.cli.agent_refs import check_tools
    from grambot.secrets.backends import secrets_config

    problems: list[Problem] = list(settings.problems)
    problems += secrets_config(settings.raw, settings.path)[1]
    for directory in settings.plugin_dirs:
        # the default plugins/ may be absent (nothing to load from it yet): issue 14
        if not directory.exists() and directory != settings.workspace / "plugins":
            from grambot.errors import Problem as P

            problems.append(P(settings.path, "pluginDirs", f"folder {directory} does not exist"))
    catalog = catalog_of(settings)
    problems += catalog.problems
    enabled = {c.instance_id.lower() for c in settings.instances if c.enabled}
    problems += schema_check(catalog, enabled)(settings)
    texts, warnings = [str(p) for p in problems], agent_warnings(settings)
    if settings.agent.tools is not None:
        tools = check_tools(settings.workspace, settings.agent.tools)
        texts += tools.errors
        warnings += tools.warnings
    warnings += _unknown_settings_keys(settings, catalog)
    return texts, warnings


def _unknown_settings_keys(settings: EngineSettings, catalog: PluginCatalog) -> list[str]:
    """Keys of an enabled entry's settings its plugin's schema does not know and would ignore
    (a schema that forbids extra keys reports them as problems already)."""
    from grambot.cli.plugin_info import read_plugin
    from grambot.contract.definition import ignored_keys
    from grambot.errors import PluginUnreadable, did_you_mean

    warnings = []
    for index, config in enumerate(settings.instances):
        descriptor = catalog.get(config.plugin_id)
        if descriptor is None or not config.settings or not config.enabled:
            continue
        try:
            schema = read_plugin(descriptor).settings_schema
        except PluginUnreadable:
            continue  # reported as a problem of the plugin
        known = list(schema.model_fields) if schema is not None else []
        for key in ignored_keys(schema, config.settings):
            warnings.append(
                f"{settings.path}: {entry_path(index, 'settings', key)}: instance "
                f"{config.instance_id!r}: plugin {config.plugin_id!r} has no setting "
                f"{key!r}; it is ignored{did_you_mean(key, known)}"
            )
    return warnings
