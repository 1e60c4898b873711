"""The `grambot` command. Imports stay inside the commands so `--help` is instant."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
EXIT_LOCKED = 1

LOG_LEVELS = ["debug", "info", "warning", "error"]
LOG_FORMATS = ["text", "json"]


def _setup_logging(level: str, fmt: str = "text") -> None:
    from grambot.logs import configure_logging

    configure_logging(level, fmt)


def logging_options(default_level: str = "info") -> Callable[[F], F]:
    """`--log-level` and `--log-format` for a command (configured before it runs)."""

    def decorate(command: F) -> F:
        command = click.option(
            "--log-format",
            type=click.Choice(LOG_FORMATS),
            default="text",
            show_default=True,
            help="Log lines as text or as JSON objects (one per line, on stderr).",
        )(command)
        return click.option(
            "--log-level",
            type=click.Choice(LOG_LEVELS),
            default=default_level,
            show_default=True,
        )(command)

    return decorate


workspace_option = click.option(
    "--workspace",
    "-w",
    type=click.Path(file_okay=False, path_type=Path),
    default=lambda: os.environ.get("GRAMBOT_WORKSPACE", "."),
    show_default="current folder or $GRAMBOT_WORKSPACE",
    help="Folder holding .scout/settings.json.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="grambot")
def main() -> None:
    """grambot: a chat-bot engine whose plugins are instances in .scout/settings.json."""


@main.command()
@workspace_option
@logging_options()
@click.option(
    "--reload-plugins",
    is_flag=True,
    help="Reload every loaded instance of a plugin when a file of its folder changes "
    "(for plugin authors).",
)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds a SIGINT/SIGTERM shutdown may take in all before the process exits anyway.",
)
def run(
    workspace: Path, log_level: str, log_format: str, reload_plugins: bool, shutdown_timeout: float
) -> None:
    """Load the enabled instances, follow edits of settings.json, run until SIGINT/SIGTERM."""
    import asyncio

    from grambot.lock import EngineLocked
    from grambot.runtime import run as run_engine

    _setup_logging(log_level, log_format)
    try:
        code = asyncio.run(
            run_engine(
                workspace, reload_plugins=reload_plugins, shutdown_timeout=shutdown_timeout
            )
        )
    except EngineLocked as exc:
        click.echo(f"grambot run: {exc}", err=True)
        sys.exit(EXIT_LOCKED)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
