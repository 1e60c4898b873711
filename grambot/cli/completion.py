"""`grambot completion bash|zsh|fish` prints the shell's completion script (click's own
machinery); the completers below give the ids an argument takes, read cheaply (plain JSON, no
plugin imported) so that a Tab stays instant."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

SHELLS = ("bash", "zsh", "fish")
MAX_SCANNED = 2000  # plugin.json files read for completion, at most
MAX_JSON_BYTES = 5 * 1024 * 1024


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion_command(shell: str) -> None:
    """Print the completion script for SHELL. Load it from your shell's start-up file:
    bash `eval "$(grambot completion bash)"`, zsh `eval "$(grambot completion zsh)"`,
    fish `grambot completion fish | source`."""
    from click.shell_completion import get_completion_class

    from grambot.cli import main

    completion_class = get_completion_class(shell)
    assert completion_class is not None  # one of SHELLS
    click.echo(completion_class(main, {}, "grambot", "_GRAMBOT_COMPLETE").source())


def _workspace(ctx: click.Context) -> Path:
    given = ctx.params.get("workspace")
    return Path(given or os.environ.get("GRAMBOT_WORKSPACE", "."))


def _json(path: Path) -> Any:
    """A regular file's JSON, or None (a FIFO or device is never read: a Tab must not hang)."""
    from grambot.errors import UnsafeFile
    from grambot.files import read_regular

    try:
        return json.loads(read_regular(path, MAX_JSON_BYTES))
    except (OSError, ValueError, UnsafeFile):
        return None


def _settings(ctx: click.Context) -> dict[str, Any]:
    data = _json(_workspace(ctx) / ".scout" / "settings.json")
    return data if isinstance(data, dict) else {}


def instance_ids(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The instance ids of the workspace's settings.json, with their plugin as help."""
    entries = _settings(ctx).get("plugins")
    items = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("instanceId"), str):
            instance_id = entry["instanceId"]
            if instance_id.startswith(incomplete):
                items.append(CompletionItem(instance_id, help=str(entry.get("pluginId", ""))))
    return items


def plugin_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Ids of the built-ins and of the plugins under the workspace's pluginDirs (and, for
    `enable`, which also takes one, the instance ids)."""
    from grambot.config.catalog import builtin_plugins_dir

    settings = _settings(ctx)
    folders = [builtin_plugins_dir()]
    dirs = settings.get("pluginDirs", ["plugins"])
    for folder in dirs if isinstance(dirs, list) else []:
        if isinstance(folder, str):
            folders.append(_workspace(ctx) / folder)
    ids: set[str] = set()
    scanned = 0
    for folder in folders:
        if folder is None or not folder.is_dir():
            continue
        for manifest in folder.rglob("plugin.json"):
            scanned += 1
            if scanned > MAX_SCANNED:
                break
            data = _json(manifest)
            plugin_id = data.get("id") or data.get("name") if isinstance(data, dict) else None
            if isinstance(plugin_id, str):
                ids.add(plugin_id)
    return [CompletionItem(i, help="plugin") for i in sorted(ids) if i.startswith(incomplete)]
