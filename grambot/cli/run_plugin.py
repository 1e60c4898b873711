"""`grambot run-plugin NAME --input JSON [--config JSON]`: Summit's `runPlugin` from a shell.

Runs an execute-style plugin of the workspace's catalog once, in a transient instance of its own
id space (grambot.contract.execute), prints its result as JSON on stdout and exits 0; on failure
prints `error: ...` on stderr (with the catalog's problems, e.g. a bad plugin.json, when the
plugin is not found) and exits 1. Its log lines and its `error:` line go through the one masker
(grambot.masking): a secret the plugin read never shows, in any form.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from grambot.cli.common import LOG_FORMAT_ENV, LOG_FORMATS, log_level_option, workspace_option


def _json_option(value: str, what: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}", param_hint=what
        ) from None


@click.command("run-plugin")
@click.argument("name")
@click.option("--input", "input_json", default="{}", show_default=True, help="The inputs (JSON).")
@click.option("--config", "config_json", default=None, help="The config (JSON object).")
@click.option(
    "--timeout-ms",
    type=click.IntRange(min=10),
    default=None,
    help="Deadline override for this run (ms, at least 10), over the manifest's timeoutMs.",
)
@workspace_option
@log_level_option("warning")
def run_plugin_command(
    name: str,
    input_json: str,
    config_json: str | None,
    timeout_ms: int | None,
    workspace: Path,
    log_level: str,
) -> None:
    """Run the execute-style plugin NAME once and print its result as JSON."""
    import asyncio

    from grambot.app.logs import configure_logging
    from grambot.masking import MASK

    inputs = _json_option(input_json, "--input")
    config = _json_option(config_json, "--config") if config_json is not None else None
    fmt = os.environ.get(LOG_FORMAT_ENV, "text")
    configure_logging(log_level, fmt if fmt in LOG_FORMATS else "text")  # masked, as every line
    try:
        result = asyncio.run(_run(workspace, name, inputs, config, timeout_ms))
        text = json.dumps(result, ensure_ascii=False)
    except Exception as exc:
        click.echo(f"error: {MASK.apply(_describe(exc))}", err=True)
        sys.exit(1)
    click.echo(text)


async def _run(workspace: Path, name: str, inputs: Any, config: Any, timeout_ms: int | None) -> Any:
    from grambot.engine import Engine
    from grambot.errors import PluginNotFound

    engine = Engine(workspace)
    engine.ensure_catalog()
    if timeout_ms is not None:
        engine.timeout_overrides[name] = timeout_ms
    try:
        return await engine.run_plugin(name, inputs, config)
    except PluginNotFound as exc:
        if not engine.catalog.problems:
            raise
        problems = "".join(f"\n  {p}" for p in engine.catalog.problems)
        raise _NotFound(f"{exc}\nproblems met while reading plugins:{problems}") from None


class _NotFound(Exception):
    """The plugin is not in the catalog; the message lists the catalog's problems."""


def _describe(exc: BaseException) -> str:
    from grambot.errors import GrambotError

    if isinstance(exc, GrambotError | _NotFound | ImportError):
        return str(exc)
    if isinstance(exc, TypeError) and "JSON serializable" in str(exc):
        return f"the plugin's result cannot be written as JSON: {exc}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
