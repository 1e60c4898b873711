"""`grambot status`: what the running engine reports in `.scout/status.json`.

Whether an engine runs is judged by its lock (`.scout/engine.lock`), not by the pid in the
file, so a crashed engine's leftover file is never shown as live.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from grambot.cli.common import EXIT_NOT_RUNNING, EXIT_PROBLEMS, fail, workspace_option

KINDS = (
    ("connectors", "connector"),
    ("inference", "inference"),
    ("tools", "tool"),
    ("images", "image"),
)


def _age(iso: str | None, now: datetime) -> str:
    if not iso:
        return "-"
    try:
        seconds = (now - datetime.fromisoformat(iso)).total_seconds()
    except ValueError:
        return iso
    return _span(seconds) + " ago" if seconds >= 0 else "in " + _span(-seconds)


def _span(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"
    return f"{seconds // 86400:.0f}d{seconds % 86400 // 3600:02.0f}h"


def _registered(registrations: dict[str, list[str]]) -> str:
    parts = []
    for key, label in KINDS:
        names = registrations.get(key) or []
        if names:
            parts.append(f"{label}: {', '.join(names)}")
    return "; ".join(parts) or "-"


def render(status: dict[str, Any], now: datetime | None = None) -> str:
    """The readable table of a status document."""
    now = now or datetime.now(UTC)
    instances = status.get("instances") or []
    counts: dict[str, int] = {}
    for item in instances:
        counts[item.get("state", "?")] = counts.get(item.get("state", "?"), 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no instances"
    lines = [
        f"engine pid {status.get('pid')}, started {_age(status.get('startedAt'), now)}: {summary}",
    ]
    ignored = status.get("ignoredEdit")
    if isinstance(ignored, dict):
        lines.append(
            f"the last edit of settings.json ({_age(ignored.get('at'), now)}) was ignored; "
            "nothing of it applies until the next valid edit:"
        )
        lines += [f"  {p}" for p in ignored.get("problems") or []]
    if not instances:
        return "\n".join(lines)
    header = ("INSTANCE", "PLUGIN", "STATE", "SINCE", "REGISTERED")
    rows = []
    for item in instances:
        state = str(item.get("state"))
        if state == "retrying":
            state = f"retrying #{item.get('attempt')} {_age(item.get('nextAttemptAt'), now)}"
        rows.append(
            (
                str(item.get("instanceId")),
                str(item.get("pluginId")),
                state,
                _age(item.get("since"), now),
                _registered(item.get("registrations") or {}),
            )
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    errors = [
        (i.get("instanceId"), i.get("reason"), i.get("error")) for i in instances if i.get("error")
    ]
    if errors:
        lines.append("")
        lines.append("errors:")
        for instance_id, reason, error in errors:
            why = f" ({reason})" if reason else ""
            lines.append(f"  {instance_id}{why}: {error}".replace("\n", "\n    "))
    held = [(i.get("instanceId"), i.get("held")) for i in instances if i.get("held")]
    if held:
        lines.append("")
        lines.append("edits not applied (these run as they were):")
        for instance_id, problems in held:
            for problem in problems:
                lines.append(f"  {instance_id}: {problem}")
    return "\n".join(lines)


@click.command("status")
@workspace_option
@click.option("--json", "as_json", is_flag=True, help="Print status.json as it is.")
def status_command(workspace: Path, as_json: bool) -> None:
    """Show the running engine's instances: state, since when, error, registrations.

    Exit code 3 when no engine runs in the workspace."""
    from grambot.lock import engine_running
    from grambot.status import read_status

    workspace = workspace.resolve()
    if not engine_running(workspace):
        fail(
            f"no grambot engine is running in {workspace} (nothing holds "
            f"{workspace / '.scout' / 'engine.lock'}); start one with `grambot run`",
            EXIT_NOT_RUNNING,
        )
    status = read_status(workspace / ".scout")
    if status is None:
        fail(
            f"an engine is running in {workspace} but has not written "
            f"{workspace / '.scout' / 'status.json'} yet; try again in a moment",
            EXIT_PROBLEMS,
        )
    click.echo(json.dumps(status, indent=2) if as_json else render(status))
