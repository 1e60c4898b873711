"""The `grambot` command. Imports stay inside the commands so `--help` is instant."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

LOG_LEVELS = ["debug", "info", "warning", "error"]


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


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
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True)
def run(workspace: Path, log_level: str) -> None:
    """Load the enabled instances and run until SIGINT/SIGTERM."""
    import asyncio

    from grambot.runtime import run as run_engine

    _setup_logging(log_level)
    sys.exit(asyncio.run(run_engine(workspace)))


from grambot.cli_run_plugin import run_plugin_command  # noqa: E402  (issue 5: Summit's runPlugin)

main.add_command(run_plugin_command)

if __name__ == "__main__":  # pragma: no cover
    main()
