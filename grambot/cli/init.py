"""`grambot init [DIR]`: a workspace to start from, anywhere (README: Install anywhere).

It holds one enabled `console` instance (chat in the terminal) answered by the offline `echo`
model, and nothing else; an empty `plugins/` folder for plugins of one's own; and a
`.gitignore` that keeps secrets and runtime state out of git. Only click is imported here:
the command must stay quick.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from grambot.cli.common import fail
from grambot.files import write_atomic

__all__ = ["GITIGNORE_LINES", "STARTER_SETTINGS", "init_command", "init_workspace"]

STARTER_SETTINGS: dict[str, object] = {
    "pluginDirs": ["plugins"],
    "agent": {"inference": "echo"},
    "plugins": [
        {"instanceId": "console", "pluginId": "console", "enabled": True, "settings": {}},
        {"instanceId": "echo", "pluginId": "echo", "enabled": True, "settings": {}},
    ],
}

# What a running bot writes into its workspace that must never be committed: secrets (and the
# backups that hold them), the durable state, the engine's own files, and logs.
GITIGNORE_LINES = (
    "# grambot: secrets and runtime state stay out of git",
    ".scout/secrets.json",
    ".scout/secrets.changed",
    ".scout/state.db",
    ".scout/state.db-wal",
    ".scout/state.db-shm",
    ".scout/status.json",
    ".scout/control-token",
    ".scout/engine.lock",
    ".scout/requests/",
    ".scout/backups/",
    ".scout/plugins/",
    ".scout/bot/",
    "grambot-backup-*.tar.gz",
    "logs/",
    "*.log",
)


def init_workspace(root: Path) -> list[str]:
    """Write the starter workspace into `root` (created if missing); returns what it wrote.
    FileExistsError when `root` already holds a settings file."""
    scout = root / ".scout"
    settings = scout / "settings.json"
    if os.path.lexists(settings):  # a file, a link (even a dangling one), a FIFO: never touched
        raise FileExistsError(str(settings))
    scout.mkdir(parents=True, exist_ok=True)
    written = []
    text = json.dumps(STARTER_SETTINGS, indent=2) + "\n"
    try:
        # Appears whole (never a half-written file for a running engine to read) and, unlike a
        # rename, fails when a settings.json appeared meanwhile.
        write_atomic(settings, text, mode=None, fsync=False, exclusive=True)
    except FileExistsError:
        raise FileExistsError(str(settings)) from None
    written.append(".scout/settings.json")
    plugins = root / "plugins"
    if not plugins.is_dir():
        plugins.mkdir()
        written.append("plugins/")
    if _write_gitignore(root / ".gitignore"):
        written.append(".gitignore")
    return written


def _write_gitignore(path: Path) -> bool:
    """Add the lines missing from `path` (kept as it is otherwise); False if none were."""
    try:
        existing = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        existing = ""
    present = {line.strip() for line in existing.splitlines()}
    missing = [line for line in GITIGNORE_LINES[1:] if line not in present]
    if not missing:
        return False
    block = "\n".join([GITIGNORE_LINES[0], *missing]) + "\n"
    if existing and not existing.endswith("\n"):
        existing += "\n"
    text = existing + ("\n" if existing else "") + block
    # Into the file a link names, keeping its mode: it is the user's file.
    write_atomic(path.resolve(), text, mode=None, keep_mode=True, fsync=False)
    return True


@click.command("init")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
def init_command(directory: Path | None) -> None:
    """Make DIR (default: the current folder) a grambot workspace: a terminal chat with the
    offline echo model, a plugins/ folder and a .gitignore for secrets and state."""
    root = directory or Path(".")
    try:
        written = init_workspace(root)
    except FileExistsError as exc:
        fail(f"{exc} already exists: {root} is a grambot workspace already; nothing was written")
    except OSError as exc:
        fail(f"cannot write the workspace in {root}: {exc.strerror or exc}")
    click.echo(f"created a grambot workspace in {root.resolve()}: {', '.join(written)}")
    click.echo("  console (chat in this terminal) answered by echo (an offline model: no key)")
    click.echo("next:")
    commands = [
        ("grambot run", "chat with the bot here; Ctrl-C stops"),
        ("grambot plugins", "the other plugins, and the command that enables each"),
        ("grambot new my-tool --kind tool", "a plugin of your own, in plugins/"),
    ]
    if root.resolve() != Path.cwd().resolve():
        commands = [(f"cd {_quoted(root)}", "the workspace"), *commands[:2]]
    width = max(len(command) for command, _ in commands)
    for command, what in commands:
        click.echo(f"  {command.ljust(width)}   # {what}")


def _quoted(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))
