"""`grambot plugins`: the available plugins, their settings fields and how to enable each.

Quick even with many plugins: settings fields come from a cache (grambot.cli.plugin_list), so a
listing imports no plugin code once its plugins were described, and never an SDK.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from grambot.cli.common import logging_options, setup_logging, workspace_option

__all__ = ["plugins_command"]


@click.command("plugins")
@workspace_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@logging_options("warning")
def plugins_command(workspace: Path, as_json: bool, log_level: str, log_format: str) -> None:
    """List the available plugins with their descriptions, settings fields and the command
    that enables each."""
    from grambot.cli.plugin_list import PluginListing, cache_dir, quick_plugin_dirs

    setup_logging(log_level, log_format)
    plugin_dirs = quick_plugin_dirs(workspace)
    if plugin_dirs is None:  # not plain JSON: read it properly (and say what is wrong)
        from grambot.cli.editing import read_settings

        plugin_dirs = read_settings(workspace).plugin_dirs
    plugins = PluginListing(cache_dir())
    catalog = plugins.discover(tuple(plugin_dirs))
    items = plugins.items(catalog)
    if as_json:
        problems = [str(p) for p in catalog.problems]
        click.echo(json.dumps({"plugins": items, "problems": problems}, indent=2))
        return
    if not items:
        click.echo("no plugins found (built-ins, pluginDirs and entry points are searched)")
    for item in items:
        _print(item)
    for problem in catalog.problems:
        click.echo(f"problem: {problem}", err=True)


def _print(item: dict[str, Any]) -> None:
    version = f" {item['version']}" if item.get("version") else ""
    click.echo(
        click.style(f"{item['id']}{version}", bold=True) + f"  {item['name']}"
        f"  ({item['source']}: {item['folder']})"
    )
    if item["description"]:
        click.echo(f"    {item['description']}")
    if item.get("install"):
        click.echo(f"    needs its SDK first: {item['install']}")
    click.echo(f"    enable: {item['enable']}")
    if "error" in item:
        click.echo(f"    cannot read the plugin: {item['error']}")
    elif not item["settings"]:
        click.echo("    settings: none")
    else:
        click.echo("    settings:")
        for field in item["settings"]:
            default = " (required)" if field["required"] else f" = {field['default']}"
            click.echo(f"      {field['name']}: {field['type']}{default}")
            if field["description"]:
                click.echo(f"          {field['description']}")
    click.echo()
