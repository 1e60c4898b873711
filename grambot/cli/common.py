"""What the `grambot` commands share: options, logging set-up, exit codes, small helpers.

Only click is imported at module level: `grambot --help` must stay instant.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_PROBLEMS = 1  # invalid settings, refused edit, engine lock taken
EXIT_USAGE = 2  # click's own code for bad arguments
EXIT_NOT_RUNNING = 3  # `grambot status`: no engine runs in the workspace
EXIT_STALE = 4  # `grambot status`: an engine holds the lock but its heartbeat stopped

LOG_LEVELS = ["debug", "info", "warning", "error"]
LOG_FORMATS = ["text", "json"]
LOG_LEVEL_ENV = "GRAMBOT_LOG_LEVEL"
LOG_FORMAT_ENV = "GRAMBOT_LOG_FORMAT"


def setup_logging(level: str, fmt: str = "text") -> None:
    from grambot.app.logs import configure_logging

    configure_logging(level, fmt)


def logging_options(default_level: str = "info") -> Callable[[F], F]:
    """`--log-level` and `--log-format` for a command; $GRAMBOT_LOG_LEVEL and
    $GRAMBOT_LOG_FORMAT are their defaults (a service or container sets them once)."""

    def decorate(command: F) -> F:
        command = click.option(
            "--log-format",
            type=click.Choice(LOG_FORMATS),
            envvar=LOG_FORMAT_ENV,
            show_envvar=True,
            default="text",
            show_default=True,
            help="Log lines as text or as JSON objects (one per line, on stderr).",
        )(command)
        return log_level_option(default_level)(command)

    return decorate


def log_level_option(default_level: str) -> Callable[[F], F]:
    """`--log-level` alone ($GRAMBOT_LOG_LEVEL), for a command whose output format is its own."""
    return click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS),
        envvar=LOG_LEVEL_ENV,
        show_envvar=True,
        default=default_level,
        show_default=True,
        help="Least severe level logged (on stderr).",
    )


workspace_option = click.option(
    "--workspace",
    "-w",
    type=click.Path(file_okay=False, path_type=Path),
    default=lambda: os.environ.get("GRAMBOT_WORKSPACE", "."),
    show_default="current folder or $GRAMBOT_WORKSPACE",
    help="Folder holding .scout/settings.json.",
)


ERROR_PREFIX = "error: "  # the one prefix of every error a command prints (warnings: "warning: ")


def fail(message: str, code: int = EXIT_PROBLEMS) -> NoReturn:
    """Print `error: message` on stderr and exit with `code`."""
    click.echo(message if message.startswith(ERROR_PREFIX) else ERROR_PREFIX + message, err=True)
    raise SystemExit(code)
