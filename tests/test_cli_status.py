"""`grambot status`: a table or the JSON of the running engine; judged by the engine lock."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from grambot.cli.status import render
from grambot.registries.connectors import IncomingMessage
from grambot.storage import Job, SqliteStorage
from tests.helpers import entry, eventually
from tests.runproc import STATUS_KEYS, EngineProcess, cli, running, workspace_with


def status(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(ws, "status", *args, timeout=20)


def test_status_of_a_running_engine_as_table_and_json(tmp_path: Path) -> None:
    ws = workspace_with(
        tmp_path,
        [
            entry("t", "probe", tool_name="echo"),
            entry("bad", "nope"),
            entry("r", "probe", fail_in="load"),
            entry("off", "marker", enabled=False),
        ],
        retry={"initialDelay": 60, "maxDelay": 60},
    )
    with running(ws) as engine:
        engine.wait_states({"t": "loaded", "bad": "failed", "r": "retrying", "off": "disabled"})
        table = status(ws)
        as_json = status(ws, "--json")
    assert table.returncode == 1, table.stderr  # degraded: one failed, one retrying
    assert "degraded: bad is failed; r is retrying" in table.stderr
    out = table.stdout
    assert f"engine pid {engine.proc.pid}" in out
    assert "1 disabled, 1 failed, 1 loaded, 1 retrying" in out
    header, *rows = out.splitlines()[1:6]
    assert header.split() == ["INSTANCE", "PLUGIN", "STATE", "SINCE", "REGISTERED"]
    by_id = {row.split()[0]: row for row in rows}
    assert "loaded" in by_id["t"] and "tool: echo" in by_id["t"] and "ago" in by_id["t"]
    assert "retrying #1 in " in by_id["r"]
    assert "errors:" in out
    assert "bad (plugin-not-found): instance 'bad': no plugin with id 'nope'" in out
    assert "r (load-error): RuntimeError: probe asked to fail in load" in out

    assert as_json.returncode == 1  # readiness, the same with --json
    data = json.loads(as_json.stdout)
    assert set(data) == STATUS_KEYS
    assert data["pid"] == engine.proc.pid
    assert {i["instanceId"]: i["state"] for i in data["instances"]} == {
        "t": "loaded",
        "bad": "failed",
        "r": "retrying",
        "off": "disabled",
    }


def _seed_state(ws: Path) -> None:
    """Before the engine starts: two messages for a connector that is not loaded, a reply that
    was being sent when the last run died, one message the bot will be slow to answer, and a
    stored job of an instance that is gone."""

    async def seed() -> None:
        state = SqliteStorage(ws / ".scout" / "state.db")
        try:
            for n in range(2):
                await state.inbox.accept(IncomingMessage("gone", "g", "ada", "hi", f"g{n}"))
            await state.inbox.accept(IncomingMessage("chat", "x", "ada", "bye", "x1"))
            cut = await state.inbox.claim_next("chat", "x")
            assert cut is not None
            await state.inbox.mark_sending(cut.id)
            await state.inbox.accept(IncomingMessage("chat", "c", "ada", "nap 4", "c1"))
            await state.schedule.put(Job("ghost", "poll", "every", "3600", time.time() + 3600))
        finally:
            await state.close()

    asyncio.run(seed())


def test_status_shows_the_inbox_and_the_scheduled_jobs(tmp_path: Path) -> None:
    ws = workspace_with(
        tmp_path,
        [
            entry("chat", "fakechat"),
            entry("brain", "scripted"),
            entry("jobs", "jobs", jobs=[{"name": "a", "every": 3600}, {"name": "b", "every": 60}]),
        ],
        agent={"inference": "brain"},
    )
    _seed_state(ws)
    engine = EngineProcess(ws)
    try:
        engine.wait_ready()

        def counted() -> bool:
            doc = engine.status() or {}
            inbox, schedule = doc.get("inbox") or {}, doc.get("schedule") or {}
            return inbox.get("handling") == 1 and schedule.get("jobs") == 3

        eventually(counted, 10, what="the inbox and jobs counted in status.json")
        table = status(ws)
        as_json = status(ws, "--json")
    finally:
        engine.kill()  # the slow turn need not finish
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert "inbox: 2 accepted, 1 handling, 0 sending, 1 uncertain (1 found at start); " in (
        "\n".join(lines)
    )
    assert "scheduled jobs: 3 stored, 2 armed (of loaded instances)" in lines
    data = json.loads(as_json.stdout)
    assert data["inbox"] == {
        "accepted": 2,
        "handling": 1,
        "pending": 3,
        "sending": 0,
        "uncertain": 1,
        "uncertainAtStart": 1,
        "activeChats": 1,
    }
    assert data["schedule"] == {"jobs": 3, "active": 2}


def test_no_engine_running_is_judged_by_the_lock_not_the_file(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [])
    result = status(ws)
    assert result.returncode == 3
    assert "no grambot engine is running in" in result.stderr
    # a status file left by a crashed engine (whose pid may even be alive) is not trusted
    (ws / ".scout" / "status.json").write_text(
        json.dumps({"pid": 1, "startedAt": "2020-01-01T00:00:00+00:00", "instances": []})
    )
    (ws / ".scout" / "engine.lock").write_text("")
    for args in ((), ("--json",)):
        result = status(ws, *args)
        assert result.returncode == 3 and result.stdout == ""


def test_render_shows_ages_and_retry_times() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    doc = {
        "pid": 7,
        "startedAt": (now - timedelta(hours=2, minutes=5)).isoformat(),
        "instances": [
            {
                "instanceId": "a",
                "pluginId": "p",
                "state": "retrying",
                "error": "boom\nline 2",
                "since": (now - timedelta(seconds=5)).isoformat(),
                "registrations": {
                    "connectors": ["a"],
                    "inference": [],
                    "tools": ["x", "y"],
                    "images": [],
                },
                "attempt": 3,
                "nextAttemptAt": (now + timedelta(seconds=90)).isoformat(),
            },
        ],
    }
    text = render(doc, now)
    assert "ignored" not in text and "not applied" not in text
    assert "engine pid 7, started 2h05m ago: 1 retrying" in text
    assert "retrying #3 in 1m30s" in text and "5s ago" in text
    assert "connector: a; tool: x, y" in text
    assert "  a: boom\n    line 2" in text


def test_render_shows_the_ignored_edit_and_held_entries() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    doc = {
        "pid": 7,
        "startedAt": now.isoformat(),
        "ignoredEdit": {
            "at": (now - timedelta(seconds=3)).isoformat(),
            "problems": ["settings.json: plugins: plugins is required", "settings.json: x: y"],
        },
        "instances": [
            {
                "instanceId": "tg",
                "pluginId": "telegram",
                "state": "loaded",
                "reason": None,
                "error": None,
                "since": now.isoformat(),
                "registrations": {},
                "attempt": 0,
                "nextAttemptAt": None,
                "held": ["plugins[0].settings.pollTimeout: Input should be a valid integer"],
            },
            {
                "instanceId": "b",
                "pluginId": "nope",
                "state": "failed",
                "reason": "plugin-not-found",
                "error": "no plugin with id 'nope'",
                "since": now.isoformat(),
                "registrations": {},
            },
        ],
    }
    text = render(doc, now)
    assert "the last edit of settings.json (3s ago) was ignored" in text
    assert "  settings.json: plugins: plugins is required\n  settings.json: x: y" in text
    assert "edits not applied (these run as they were):" in text
    assert "  tg: plugins[0].settings.pollTimeout: Input should be a valid integer" in text
    assert "  b (plugin-not-found): no plugin with id 'nope'" in text


def test_render_shows_the_isolation_of_process_instances() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    loaded = {"state": "loaded", "since": now.isoformat(), "registrations": {}}
    doc = {
        "pid": 7,
        "startedAt": now.isoformat(),
        "instances": [
            {**loaded, "instanceId": "in", "pluginId": "p", "isolation": {"mode": "inprocess"}},
            {
                **loaded,
                "instanceId": "out",
                "pluginId": "p",
                "isolation": {
                    "mode": "process",
                    "pid": 4242,
                    "rssBytes": 30_859_264,
                    "sandbox": "landlock ABI 7",
                    "memoryMb": 256,
                    "cpuSeconds": 1.5,
                    "maxProcesses": 20,
                    "limits": {"memory": "cgroup", "processes": "none (no pids cgroup)"},
                    "restarts": 2,
                    "lastExit": {
                        "reason": "crashed",
                        "at": (now - timedelta(seconds=5)).isoformat(),
                    },
                },
            },
        ],
    }
    text = render(doc, now)
    assert "in process" not in text and "  in:" not in text
    assert (
        "isolated:\n  out: pid 4242, RSS 29.4 MiB (limit 256 MiB), landlock ABI 7, "
        "2 restarts, last exit crashed 5s ago\n"
        "    limits: memory cgroup, 20 processes none (no pids cgroup), 1.5 CPU s per stage "
        "or call"
    ) in text
