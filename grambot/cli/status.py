"""`grambot status`: what the running engine reports in `.scout/status.json`.

Whether an engine runs is judged by its lock (`.scout/engine.lock`), not by the pid in the
file, so a crashed engine's leftover file is never shown as live; whether it is stuck, by the
heartbeat in the file (`updatedAt`, written from the event loop).

Two questions, two exit codes (docs/health.md):

* `grambot status --check` is **liveness**: 0 an engine runs with a fresh heartbeat (or is
  starting), 3 none runs, 4 its heartbeat is stale (a frozen event loop). For container health
  checks and supervisors: restarting helps only in these cases.
* `grambot status` (table or `--json`) is **readiness**: 0 every enabled instance is loaded and
  healthy, 1 degraded (failed, retrying or loading instances, a held or ignored edit, an
  unhealthy instance, or still starting), 3 none runs, 4 stale.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from grambot.cli.common import (
    EXIT_NOT_RUNNING,
    EXIT_PROBLEMS,
    EXIT_STALE,
    fail,
    workspace_option,
)

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


def degraded(status: dict[str, Any]) -> list[str]:
    """Why the engine is not ready (empty: every enabled instance is loaded and healthy)."""
    reasons = []
    if status.get("ignoredEdit"):
        reasons.append("the last edit of settings.json was ignored")
    if status.get("settingsProblems"):
        reasons.append(f"{len(status['settingsProblems'])} entry problem(s) in settings.json")
    for item in status.get("instances") or []:
        iid, state = item.get("instanceId"), item.get("state")
        if state == "disabled":
            continue
        if state != "loaded":
            reasons.append(f"{iid} is {state}")
        if item.get("held"):
            reasons.append(f"{iid}: an edit of its entry is held")
        health = item.get("health") or {}
        if health.get("healthy") is False:
            reasons.append(f"{iid} is unhealthy")
    return reasons


def _isolation(block: dict[str, Any], now: datetime) -> str:
    """An isolated instance's process (docs/isolation.md): pid, RSS, sandbox, restarts."""
    parts = [f"pid {block['pid']}" if block.get("pid") else "no process"]
    if block.get("rssBytes"):
        rss = f"RSS {block['rssBytes'] / (1024 * 1024):.1f} MiB"
        if block.get("memoryMb"):
            rss += f" (limit {block['memoryMb']} MiB)"
        parts.append(rss)
    if block.get("sandbox"):
        parts.append(str(block["sandbox"]))
    restarts = block.get("restarts") or 0
    parts.append(f"{restarts} restart{'' if restarts == 1 else 's'}")
    last = block.get("lastExit")
    if isinstance(last, dict):
        parts.append(f"last exit {last.get('reason')} {_age(last.get('at'), now)}")
    return ", ".join(parts)


def _limits(block: dict[str, Any]) -> str:
    """How its limits are kept (docs/isolation.md#limits): by a cgroup, an rlimit, or not."""
    kept = block.get("limits")
    if not isinstance(kept, dict):
        return ""
    parts = [f"memory {kept.get('memory')}"]
    if block.get("maxProcesses"):
        parts.append(f"{block['maxProcesses']} processes {kept.get('processes')}")
    if block.get("cpuSeconds"):
        parts.append(f"{block['cpuSeconds']:g} CPU s per stage or call")
    return ", ".join(parts)


def _state_lines(status: dict[str, Any]) -> list[str]:
    """The durable inbox and the scheduled jobs (docs/state.md), when the engine reports them."""
    lines = []
    inbox = status.get("inbox")
    if isinstance(inbox, dict):
        counts = ", ".join(
            f"{inbox.get(state, 0)} {state}"
            for state in ("accepted", "handling", "sending", "uncertain")
        )
        at_start = inbox.get("uncertainAtStart") or 0
        found = f" ({at_start} found at start)" if at_start else ""
        lines.append(
            f"inbox: {counts}{found}; {inbox.get('activeChats', 0)} chat(s) being answered"
        )
    schedule = status.get("schedule")
    if isinstance(schedule, dict):
        lines.append(
            f"scheduled jobs: {schedule.get('jobs', 0)} stored, {schedule.get('active', 0)} "
            "armed (of loaded instances)"
        )
    return lines


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
    entry_problems = status.get("settingsProblems") or []
    if entry_problems:
        lines.append("settings.json entries left out (fix them; the rest applies):")
        lines += [f"  {p}" for p in entry_problems]
    if not instances:
        return "\n".join([*lines, *_state_lines(status)])
    header = ("INSTANCE", "PLUGIN", "STATE", "SINCE", "REGISTERED")
    rows = []
    for item in instances:
        state = str(item.get("state"))
        if state == "retrying":
            state = f"retrying #{item.get('attempt')} {_age(item.get('nextAttemptAt'), now)}"
        if (item.get("health") or {}).get("healthy") is False:
            state += " (unhealthy)"
        stalls = item.get("stalls") or 0
        if stalls:
            state += f", {stalls} stall{'s' if stalls > 1 else ''}"
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
    durable = _state_lines(status)
    if durable:
        lines += ["", *durable]
    errors = [
        (i.get("instanceId"), i.get("reason"), i.get("error")) for i in instances if i.get("error")
    ]
    if errors:
        lines.append("")
        lines.append("errors:")
        for instance_id, reason, error in errors:
            why = f" ({reason})" if reason else ""
            lines.append(f"  {instance_id}{why}: {error}".replace("\n", "\n    "))
    unhealthy = [
        (i.get("instanceId"), (i.get("health") or {}).get("lastError") or {})
        for i in instances
        if (i.get("health") or {}).get("healthy") is False
    ]
    if unhealthy:
        lines.append("")
        lines.append("unhealthy:")
        for instance_id, error in unhealthy:
            lines.append(f"  {instance_id}: {error.get('message')} ({_age(error.get('at'), now)})")
    isolated = [i for i in instances if (i.get("isolation") or {}).get("mode") == "process"]
    if isolated:
        lines.append("")
        lines.append("isolated:")
        for item in isolated:
            lines.append(f"  {item.get('instanceId')}: {_isolation(item['isolation'], now)}")
            if limits := _limits(item["isolation"]):
                lines.append(f"    limits: {limits}")
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
@click.option(
    "--check",
    is_flag=True,
    help="Liveness only, for health checks: 0 alive, 3 not running, 4 stale (frozen).",
)
def status_command(workspace: Path, as_json: bool, check: bool) -> None:
    """Show the running engine's instances: state, health, since when, error, registrations.

    Exit codes: 0 ready (every enabled instance loaded and healthy), 1 degraded or starting,
    3 no engine runs, 4 the engine's heartbeat is stale (its event loop is frozen). With
    --check (liveness): 0 alive, 3, 4."""
    from grambot.app.lock import engine_running
    from grambot.app.status import is_stale, read_status

    workspace = workspace.resolve()
    if not engine_running(workspace):
        fail(
            f"no grambot engine is running in {workspace} (nothing holds "
            f"{workspace / '.scout' / 'engine.lock'}); start one with `grambot run`",
            EXIT_NOT_RUNNING,
        )
    status = read_status(workspace / ".scout")
    if status is None:
        message = f"the engine in {workspace} is starting (no status.json yet)"
        if check:
            click.echo(f"alive: {message}")
            return
        fail(message, EXIT_PROBLEMS)
    if is_stale(status):
        fail(
            f"the engine in {workspace} (pid {status.get('pid')}) is stale: its heartbeat "
            f"({status.get('updatedAt')}) stopped; its event loop is frozen or it is stuck",
            EXIT_STALE,
        )
    if check:
        click.echo(f"alive: engine pid {status.get('pid')} in {workspace}")
        return
    click.echo(json.dumps(status, indent=2) if as_json else render(status))
    reasons = degraded(status)
    if reasons:
        if not as_json:
            click.echo(f"\ndegraded: {'; '.join(reasons)}", err=True)
        raise SystemExit(EXIT_PROBLEMS)
