"""Logs an operator can use: in JSON every line is JSON (warnings, uncaught
exceptions, signal and deadline lines included), tracebacks in `exception`, structured fields;
one info line per message handled, without its text unless asked; GRAMBOT_LOG_LEVEL and
GRAMBOT_LOG_FORMAT as the options' defaults."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from grambot import CONNECTOR_MESSAGE
from grambot.bot import Bot
from grambot.cli import main
from grambot.engine import Engine
from tests.helpers import Workspace, entry, eventually
from tests.runproc import EngineProcess, workspace_with

SECRET = "noisy-secret-6d1f0c2e"


pytestmark = pytest.mark.usefixtures("keep_root_logging")


def _json_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for line in output.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\n{output}") from None
    return lines


def _one(lines: list[dict[str, Any]], text: str) -> dict[str, Any]:
    found = [line for line in lines if text in line["message"]]
    assert len(found) == 1, (text, found)
    return found[0]


def _with_secret(ws: Path) -> Path:
    secrets = ws / ".scout" / "secrets.json"
    secrets.write_text(json.dumps({"n": {"token": SECRET}}))
    secrets.chmod(0o600)
    return ws


def test_every_line_is_json_warnings_thread_deaths_and_tracebacks_included(
    tmp_path: Path,
) -> None:
    ws = _with_secret(
        workspace_with(
            tmp_path,
            [entry("n", "noisy"), entry("p", "probe", fail_in="load")],
            retry={"initialDelay": 60, "maxDelay": 60},
        )
    )
    engine = EngineProcess(ws, env={"GRAMBOT_LOG_FORMAT": "json"})  # the variable, no option
    try:
        engine.wait_ready()
        engine.wait_for_log("marker-unraisable")
    finally:
        assert engine.stop() == 0, engine.output
    assert SECRET not in engine.output
    lines = _json_lines(engine.output)

    warning = _one(lines, "marker-warning")
    assert warning["logger"] == "py.warnings" and warning["level"] == "warning"
    assert "UserWarning" in warning["message"]

    thread = _one(lines, "uncaught exception in thread noisy-thread")
    assert thread["event"] == "uncaught" and "marker-thread ***" in thread["exception"]
    assert thread["exception"].startswith("Traceback")

    unraisable = next(line for line in lines if line.get("event") == "unraisable")
    assert "marker-unraisable ***" in unraisable["exception"]

    failed = _one(lines, "instance p (plugin probe) failed at load")
    assert failed["instance"] == "p" and failed["event"] == "instance.retrying"
    assert (failed["stage"], failed["kind"], failed["attempt"]) == ("load", "load-error", 1)
    assert "Traceback" not in failed["message"]
    assert "probe asked to fail in load" in failed["exception"]

    ready = _one(lines, "grambot ready")
    assert ready["event"] == "engine.ready"
    loaded = _one(lines, "instance n (plugin noisy) loaded")
    assert loaded["event"] == "instance.loaded" and loaded["instance"] == "n"


def test_an_uncaught_exception_in_the_main_thread_is_one_json_line() -> None:
    code = (
        "from grambot.app.logs import configure_logging, install_exception_hooks\n"
        "from grambot.masking import MASK\n"
        "configure_logging('info', 'json'); install_exception_hooks()\n"
        f"MASK.add([{SECRET!r}])\n"
        f"raise RuntimeError('boom ' + {SECRET!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    (line,) = _json_lines(done.stderr)
    assert line["level"] == "critical" and line["message"] == "uncaught exception"
    assert "RuntimeError: boom ***" in line["exception"] and SECRET not in done.stderr


def _stubborn(tmp_path: Path, mode: str) -> EngineProcess:
    ws = workspace_with(
        tmp_path, [entry("s", "stubborn", mode=mode, block=30)], timeouts={"unload": 30}
    )
    return EngineProcess(ws, "--shutdown-timeout", "1.5", "--log-format", "json")


def test_the_second_signal_line_is_json(tmp_path: Path) -> None:
    engine = _stubborn(tmp_path, "block-unload")
    try:
        engine.wait_ready()
        engine.signal(signal.SIGTERM)
        eventually(lambda: "unload" in (engine.scout / "plugins" / "s" / "calls.log").read_text())
        time.sleep(0.2)  # the loop is blocked in the plugin's unload
        engine.signal(signal.SIGTERM)
        assert engine.proc.wait(10) == 130
    finally:
        engine.kill()
    line = _one(_json_lines(engine.output), "second SIGTERM: exiting now")
    assert line["logger"] == "grambot.app.signals"


def test_the_shutdown_deadline_line_is_json_with_every_stack(tmp_path: Path) -> None:
    engine = _stubborn(tmp_path, "block-load")
    try:
        eventually(lambda: (engine.scout / "plugins" / "s" / "calls.log").exists(), what="load")
        time.sleep(0.3)  # the loop is blocked in the plugin's time.sleep(30)
        engine.signal(signal.SIGTERM)
        assert engine.proc.wait(10) == 1
    finally:
        engine.kill()
    line = _one(_json_lines(engine.output), "shutdown did not finish within 1.5 s")
    assert "time.sleep" in line["stack"] or "plugin.py" in line["stack"], line["stack"]
    assert "Thread MainThread" in line["stack"]


# -- one line per message ---------------------------------------------------------------------

BOT_PLUGINS = [
    entry("chat", "fakechat"),
    entry("brain", "scripted"),
    entry("probe-tool", "probe", tool_name="echo_tool"),
]


async def _handled(
    engine: Engine, workspace: Workspace, caplog: pytest.LogCaptureFixture, text: str
) -> logging.LogRecord:
    await engine.apply(workspace.write(BOT_PLUGINS, agent={"inference": "brain"}))
    connector: Any = engine.registries.connectors.get("chat")
    with caplog.at_level(logging.INFO, logger="grambot.bot"):
        engine.queue.emit(
            "fakechat", "chat", CONNECTOR_MESSAGE, {"chatId": "c7", "text": text, "messageId": "1"}
        )
        for _ in range(500):
            records = [r for r in caplog.records if getattr(r, "event", "") == "message.handled"]
            if records and connector.sent:
                (record,) = records
                return record
            await asyncio.sleep(0.01)
    raise AssertionError(f"no message.handled line: {caplog.text}")


async def test_one_info_line_per_message_with_its_figures_and_no_text(
    engine: Engine, workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    record = await _handled(engine, workspace, caplog, "counted private words")
    assert record.levelno == logging.INFO
    assert (record.connector, record.chat, record.provider, record.model) == (  # type: ignore[attr-defined]
        "chat",
        "c7",
        "brain",
        "s-1",
    )
    assert record.tokens == {"in": 20, "out": 7}  # type: ignore[attr-defined]
    assert record.tools == [] and record.sent is True  # type: ignore[attr-defined]
    assert 0 <= record.latency < 5  # type: ignore[attr-defined]
    message = record.getMessage()
    assert "chat/c7" in message and "model brain/s-1" in message and "20 tokens in" in message
    assert "private" not in message and getattr(record, "text", None) is None


async def test_tool_calls_are_named_and_texts_appear_only_when_asked(
    engine: Engine, bot: Bot, workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    bot.log_messages = True
    record = await _handled(engine, workspace, caplog, "!echo_tool ping")
    assert record.tools == ["echo_tool"]  # type: ignore[attr-defined]
    assert record.text == "!echo_tool ping"  # type: ignore[attr-defined]
    assert record.reply == "tool result: ping"  # type: ignore[attr-defined]
    assert "tools: echo_tool" in record.getMessage()
    assert "'tool result: ping'" in record.getMessage()


async def test_a_command_is_named_in_its_line(
    engine: Engine, workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    record = await _handled(engine, workspace, caplog, "/help")
    assert record.command == "help" and "command /help" in record.getMessage()  # type: ignore[attr-defined]


# -- the variables ----------------------------------------------------------------------------


def test_log_variables_are_the_defaults_of_the_options(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [entry("p", "probe", fail_in="load")])
    runner = CliRunner()
    bad = runner.invoke(main, ["validate", "-w", str(ws)], env={"GRAMBOT_LOG_LEVEL": "loud"})
    assert bad.exit_code == 2
    assert "GRAMBOT_LOG_LEVEL" in bad.output and "'loud'" in bad.output
    bad = runner.invoke(main, ["validate", "-w", str(ws)], env={"GRAMBOT_LOG_FORMAT": "xml"})
    assert bad.exit_code == 2 and "GRAMBOT_LOG_FORMAT" in bad.output

    env = {"GRAMBOT_LOG_LEVEL": "warning", "GRAMBOT_LOG_FORMAT": "json"}
    engine = EngineProcess(ws, "--log-level", "error", env=env)  # an option beats its variable
    try:
        engine.wait_states({"p": "retrying"})
        time.sleep(0.2)
    finally:
        assert engine.stop() == 0, engine.output
    lines = _json_lines(engine.output)
    assert lines and all(line["level"] in ("error", "critical") for line in lines), lines
