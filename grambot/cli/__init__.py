"""The `grambot` command. Imports stay inside the commands so `--help` is instant."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from grambot.cli.common import (
    EXIT_PROBLEMS,
    logging_options,
    setup_logging,
    workspace_option,
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
@click.option(
    "--log-messages",
    is_flag=True,
    help="Put the text of each message handled, and of its reply, in its log line (masked); "
    "without it the line says who, which model, how long and how many tokens, never what.",
)
@click.option(
    "--heartbeat",
    type=click.FloatRange(min=0.05),
    default=5.0,
    show_default=True,
    help="Seconds between heartbeats in .scout/status.json (stale after 3 missed).",
)
def run(
    workspace: Path,
    log_level: str,
    log_format: str,
    reload_plugins: bool,
    shutdown_timeout: float,
    log_messages: bool,
    heartbeat: float,
) -> None:
    """Load the enabled instances, follow edits of settings.json, run until SIGINT/SIGTERM."""
    import asyncio
    import logging
    import os

    from grambot.lock import EngineLocked
    from grambot.logs import install_exception_hooks
    from grambot.runtime import run as run_engine

    setup_logging(log_level, log_format)
    install_exception_hooks()  # stderr is the log: an uncaught traceback is a record too
    log = logging.getLogger("grambot.run")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        code = loop.run_until_complete(
            run_engine(
                workspace,
                reload_plugins=reload_plugins,
                shutdown_timeout=shutdown_timeout,
                heartbeat=heartbeat,
                log_messages=log_messages,
            )
        )
    except EngineLocked as exc:
        log.error("grambot run: %s", exc, extra={"event": "engine.locked"})
        sys.exit(EXIT_PROBLEMS)
    except Exception as exc:  # .scout/state.db unusable (a newer grambot's schema): say so
        from grambot.storage import StateError

        if not isinstance(exc, StateError):
            raise
        log.error("grambot run: %s", exc, extra={"event": "engine.state-error"})
        sys.exit(EXIT_PROBLEMS)
    # The orderly shutdown is done (status.json removed, the lock released). Exit now: a plugin's
    # non-daemon thread, a pending to_thread job or a task that swallows cancellation must not
    # keep the process alive, as asyncio.run's and the interpreter's cleanup would let them.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _add_commands() -> None:
    from grambot.cli.agent import agent_command
    from grambot.cli.completion import completion_command
    from grambot.cli.control import reload_command, retry_command
    from grambot.cli.hooks import check_command, migrate_command
    from grambot.cli.manage import (
        disable_command,
        enable_command,
        new_command,
        plugins_command,
        remove_command,
        validate_command,
    )
    from grambot.cli.run_plugin import run_plugin_command
    from grambot.cli.secrets import secrets_group
    from grambot.cli.state import backup_command
    from grambot.cli.status import status_command

    for command in (
        status_command,
        plugins_command,
        enable_command,
        disable_command,
        remove_command,
        validate_command,
        new_command,
        secrets_group,
        agent_command,
        run_plugin_command,
        retry_command,
        reload_command,
        check_command,
        migrate_command,
        backup_command,
        completion_command,
    ):
        main.add_command(command)


_add_commands()
