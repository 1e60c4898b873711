"""`grambot retry ID` and `grambot reload ID`: act on an instance of the running engine."""

from __future__ import annotations

from pathlib import Path

import click

from grambot.cli.common import EXIT_NOT_RUNNING, EXIT_PROBLEMS, fail, workspace_option
from grambot.cli.completion import instance_ids

ANSWER_TIMEOUT = 120.0  # a load may take up to its own deadline (30 s by default), and retries


def _ask(workspace: Path, command: str, instance_id: str) -> None:
    from grambot.app.control import send
    from grambot.app.lock import engine_running
    from grambot.errors import NoAnswer

    workspace = workspace.resolve()
    if not engine_running(workspace):
        fail(
            f"no grambot engine is running in {workspace}; start one with `grambot run`",
            EXIT_NOT_RUNNING,
        )
    try:
        answer = send(workspace / ".scout", command, instance_id, ANSWER_TIMEOUT)
    except NoAnswer as exc:
        fail(f"grambot {command}: {exc}; see `grambot status`")
    message = str(answer.get("message", ""))
    if not answer.get("ok"):
        fail(f"grambot {command}: {message}", EXIT_PROBLEMS)
    click.echo(message)


@click.command("retry")
@click.argument("instance_id", shell_complete=instance_ids)
@workspace_option
def retry_command(instance_id: str, workspace: Path) -> None:
    """Try a failed or retrying instance again now (after fixing what it failed on).

    Exit 0 when it loaded, 1 when it failed again (the reason is printed), 3 when no engine
    runs."""
    _ask(workspace, "retry", instance_id)


@click.command("reload")
@click.argument("instance_id", shell_complete=instance_ids)
@workspace_option
def reload_command(instance_id: str, workspace: Path) -> None:
    """Unload and load an instance again with its current entry and secrets.

    Exit 0 when it loaded, 1 when it failed (the reason is printed), 3 when no engine runs."""
    _ask(workspace, "reload", instance_id)
