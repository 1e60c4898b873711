"""The `grambot` command. Imports stay inside the commands so `--help` is instant."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from grambot.cli.common import (
    EXIT_PROBLEMS,
    logging_options,
    setup_logging,
    workspace_option,
)


class _LazyCommands(click.Group):
    """The commands of `_COMMANDS`, each imported when first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is None and cmd_name in _COMMANDS:
            import importlib

            module, attribute = _COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module), attribute)
            self.add_command(command, cmd_name)
        return command

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """click's main, but its own errors (bad arguments, exit 2) carry grambot's one error
        prefix (`error: `) like every other error a command prints."""
        from grambot.cli.common import ERROR_PREFIX

        try:
            return super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.exceptions.Abort:
            click.echo("\naborted", err=True)
            sys.exit(1)
        except click.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            if isinstance(exc, click.UsageError) and ctx is not None:
                click.echo(ctx.get_usage(), err=True)
                click.echo(f"Try '{ctx.command_path} --help' for help.\n", err=True)
            click.echo(ERROR_PREFIX + exc.format_message(), err=True)
            sys.exit(exc.exit_code)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = click.utils.make_str(args[0]) if args else ""
        if args and self.get_command(ctx, name) is None and not name.startswith("-"):
            from grambot.errors import did_you_mean

            ctx.fail(f"no command {name!r}{did_you_mean(name, self.list_commands(ctx))}")
        return super().resolve_command(ctx, args)


@click.group(cls=_LazyCommands, context_settings={"help_option_names": ["-h", "--help"]})
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

    from grambot.app.logs import install_exception_hooks
    from grambot.app.runtime import run as run_engine
    from grambot.errors import EngineLocked

    _require_workspace(workspace)  # issue 14: say how to make one
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


def _require_workspace(workspace: Path) -> None:
    """`grambot run` where there is no workspace: say how to make one, start nothing."""
    from grambot.cli.common import fail

    if (workspace / ".scout" / "settings.json").exists() or (workspace / ".scout").is_dir():
        return  # a workspace (a missing settings.json in .scout/ is waited for, as while running)
    where = "" if workspace.resolve() == Path.cwd().resolve() else f" {workspace}"
    fail(
        f"grambot run: {workspace.resolve()} is not a grambot workspace (no .scout/settings.json)."
        f"\nmake one with `grambot init{where}` (a terminal chat with an offline model), then "
        f"`grambot run{' -w' + where if where else ''}`; or point at one with --workspace DIR"
    )


# Every command but `run` lives in a module of its own, imported only when that command runs
# (or when --help lists them all): `grambot plugins` does not pay for `grambot status`.
_COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("grambot.cli.init", "init_command"),
    "status": ("grambot.cli.status", "status_command"),
    "plugins": ("grambot.cli.plugins", "plugins_command"),
    "enable": ("grambot.cli.manage", "enable_command"),
    "disable": ("grambot.cli.manage", "disable_command"),
    "remove": ("grambot.cli.manage", "remove_command"),
    "validate": ("grambot.cli.validate", "validate_command"),
    "new": ("grambot.cli.manage", "new_command"),
    "secrets": ("grambot.cli.secrets", "secrets_group"),
    "agent": ("grambot.cli.agent", "agent_command"),
    "run-plugin": ("grambot.cli.run_plugin", "run_plugin_command"),
    "retry": ("grambot.cli.control", "retry_command"),
    "reload": ("grambot.cli.control", "reload_command"),
    "check": ("grambot.cli.hooks", "check_command"),
    "migrate": ("grambot.cli.hooks", "migrate_command"),
    "backup": ("grambot.cli.state", "backup_command"),
    "completion": ("grambot.cli.completion", "completion_command"),
}
