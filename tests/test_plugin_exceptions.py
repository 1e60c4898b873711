"""Every call into plugin code contains what the plugin raises, BaseExceptions included.

A CancelledError is the engine's own only when the engine cancelled the task; any other
CancelledError, SystemExit, KeyboardInterrupt, GeneratorExit or an exception whose __str__
raises is that plugin's failure: the instance fails (or the chat gets an apology) and the
engine, the reconcile and every chat worker carry on. BaseExceptions that would end the test
process if they escaped (KeyboardInterrupt) are tried in a real `grambot run` subprocess.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from grambot import CONNECTOR_MESSAGE
from grambot.engine import Engine
from tests.helpers import Workspace, entry, eventually, eventually_async
from tests.runproc import EngineProcess, running, workspace_with


async def test_load_awaiting_a_cancelled_task_fails_that_instance_and_edits_go_on(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write([entry("h", "rogue", mode="load-awaits-cancelled")]))
    instance = engine.instance("h")
    assert instance is not None and str(instance.state) in ("failed", "retrying")
    assert instance.failure is not None and "CancelledError" in instance.failure.message
    await engine.apply(
        workspace.write([entry("h", "rogue", mode="load-awaits-cancelled"), entry("p")])
    )
    assert str(engine.state_of("p")) == "loaded"


async def test_unload_awaiting_its_cancelled_task_still_unloads(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write([entry("h", "rogue", mode="unload-awaits-cancelled")]))
    assert str(engine.state_of("h")) == "loaded"
    await engine.apply(workspace.write([entry("p")]))
    assert engine.state_of("h") is None  # removed, not stuck in `unloading`
    assert workspace.calls("h") == ["load", "unload"]
    assert str(engine.state_of("p")) == "loaded"
    await engine.apply(workspace.write([entry("p"), entry("q")]))  # later edits still apply
    assert str(engine.state_of("q")) == "loaded"


async def test_an_exception_whose_str_raises_fails_only_its_instance(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(
        workspace.write([entry("h", "rogue", mode="load-bad-str"), entry("chat", "fakechat")])
    )
    instance = engine.instance("h")
    assert instance is not None and str(instance.state) in ("failed", "retrying")
    assert instance.failure is not None and "BadStr" in instance.failure.message
    assert str(engine.state_of("chat")) == "loaded"
    assert workspace.calls("chat") == ["load", "start"]  # the other connector started


async def test_system_exit_in_async_load_fails_only_its_instance(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write([entry("h", "rogue", mode="load-exit"), entry("p")]))
    instance = engine.instance("h")
    assert instance is not None and instance.failure is not None
    assert "SystemExit" in instance.failure.message
    assert str(engine.state_of("p")) == "loaded"


# -- through the bot -------------------------------------------------------------------------

BOT = [entry("chat", "fakechat"), entry("brain", "rogue", provider=True)]


async def _say(engine: Engine, text: str, chat: str = "c1", timeout: float = 5.0) -> str:
    """Deliver `text` on the fakechat connector and return the next reply in that chat."""
    connector = engine.registries.connectors.get("chat")
    assert connector is not None
    before = len([s for s in connector.sent if s[0] == chat])
    engine.queue.emit(
        "fakechat", "chat", CONNECTOR_MESSAGE, {"chatId": chat, "sender": "ada", "text": text}
    )
    for _ in range(int(timeout / 0.01)):
        mine = [s for s in connector.sent if s[0] == chat]
        if len(mine) > before:
            return str(mine[before][1])
        await asyncio.sleep(0.01)
    raise AssertionError(f"no reply to {text!r}; sent so far: {connector.sent}")


async def test_a_tool_whose_parameters_raise_is_left_out_and_the_chat_is_answered(
    engine: Engine, workspace: Workspace
) -> None:
    plugins = [*BOT, entry("bad", "rogue", tool_name="bad_tool", broken_parameters=True)]
    await engine.apply(workspace.write([*plugins, entry("p", tool_name="echo_tool")]))
    assert await _say(engine, "hello") == "ok: hello"
    assert await _say(engine, "!echo_tool hi") == "tool said: hi"


async def test_a_tool_returning_a_dict_gives_an_error_result_not_silence(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write([*BOT, entry("t", "rogue", tool_name="t1")]))
    reply = await _say(engine, "!t1 dict")
    assert reply.startswith("tool said: ") and "ToolResult" in reply, reply
    assert await _say(engine, "still there?") == "ok: still there?"


async def test_tool_raising_base_exceptions_gives_error_results(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write([*BOT, entry("t", "rogue", tool_name="t1")]))
    for what in ("exit", "generator-exit", "cancelled", "bad-str"):
        reply = await _say(engine, f"!t1 {what}")
        assert reply.startswith("tool said: ") and "failed" in reply, (what, reply)
    assert await _say(engine, "!t1 fine") == "tool said: tool: fine"


async def test_provider_raising_base_exceptions_gives_an_apology_and_the_chat_goes_on(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write(BOT, agent={"inference": "brain"}))
    for what in ("exit", "generator-exit", "cancelled", "bad-str"):
        reply = await _say(engine, what)
        assert reply.startswith("Sorry, the inference provider 'brain' failed"), (what, reply)
    assert await _say(engine, "hello") == "ok: hello"


async def test_a_tool_call_cancelled_by_a_reload_gets_an_apology_and_the_chat_goes_on(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write([*BOT, entry("t", "rogue", tool_name="t1")]))
    pending = asyncio.ensure_future(_say(engine, "!t1 slow", timeout=10))
    await asyncio.sleep(0.3)  # the tool call is in progress
    await engine.reload(["t"])
    reply = await pending
    assert reply.startswith("tool said: ") and "t1" in reply, reply
    assert await _say(engine, "!t1 again") == "tool said: tool: again"


async def test_a_provider_call_cancelled_by_a_reload_gets_an_apology_and_the_chat_goes_on(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write(BOT, agent={"inference": "brain"}))
    pending = asyncio.ensure_future(_say(engine, "slow", timeout=10))
    await asyncio.sleep(0.3)  # the model call is in progress
    await engine.reload(["brain"])
    reply = await pending
    assert reply.startswith("Sorry, the inference provider 'brain'"), reply
    assert await _say(engine, "hello") == "ok: hello"


async def test_event_handlers_raising_base_exceptions_do_not_stop_the_queue(
    engine: Engine, workspace: Workspace
) -> None:
    seen: list[str] = []

    async def exits(event: Any) -> None:
        raise SystemExit(5)

    def generator_exit(event: Any) -> None:
        raise GeneratorExit

    async def cancelled(event: Any) -> None:
        task = asyncio.create_task(asyncio.sleep(10))
        await asyncio.sleep(0)
        task.cancel()
        await task

    for handler in (exits, generator_exit, cancelled):
        engine.event_engine.register("bad", handler)
    engine.event_engine.register(None, lambda event: seen.append(event.type))
    engine.queue.emit("x", "x", "bad")
    engine.queue.emit("x", "x", "after")
    await eventually_async(lambda: "after" in seen, timeout=3)
    assert seen == ["bad", "after"]


# -- in a real process: what would end the test run if it escaped ----------------------------


def _console_workspace(tmp_path: Path, *extra: dict[str, Any]) -> Path:
    plugins = [
        entry("console", "console"),
        entry("brain", "rogue", provider=True),
        entry("t", "rogue", tool_name="t1"),
        *extra,
    ]
    return workspace_with(tmp_path, plugins, agent={"inference": "brain"})


def test_keyboard_interrupt_and_system_exit_from_a_provider_or_tool_never_end_the_process(
    tmp_path: Path,
) -> None:
    lines = ["interrupt", "exit", "!t1 interrupt", "!t1 exit", "hello"]
    engine = EngineProcess(
        _console_workspace(tmp_path),
        stdin_text="".join(f"{x}\n" for x in lines),
        close_stdin=False,  # at EOF the console stops the engine: it must keep running here
    )
    try:
        engine.wait_for_log("bot> ok: hello")
        out = engine.output
        assert out.count("bot> Sorry, the inference provider 'brain' failed") == 2, out
        assert out.count("bot> tool said: ") == 2, out
        assert engine.proc.poll() is None, out
    finally:
        assert engine.stop() == 0, engine.output


def test_keyboard_interrupt_from_a_connector_send_never_ends_the_process(
    tmp_path: Path,
) -> None:
    chat = entry("hc", "rogue", connector=True, script=["one", "two"], send_fault="interrupt")
    ws = workspace_with(
        tmp_path, [chat, entry("brain", "rogue", provider=True)], agent={"inference": "brain"}
    )
    engine = EngineProcess(ws)
    sent = ws / ".scout" / "plugins" / "hc" / "sent.log"
    try:
        engine.wait_ready()
        eventually(lambda: sent.exists() and "ok: two" in sent.read_text(), what="second reply")
        assert "KeyboardInterrupt" in engine.output  # logged with the instance, not silent
        assert engine.proc.poll() is None, engine.output
    finally:
        assert engine.stop() == 0, engine.output


def test_a_cancelled_error_in_load_at_start_does_not_end_the_process(tmp_path: Path) -> None:
    ws = workspace_with(
        tmp_path, [entry("h", "rogue", mode="load-awaits-cancelled"), entry("m", "marker")]
    )
    with running(ws) as engine:
        states = engine.states()
        assert states["m"] == "loaded" and states["h"] in ("failed", "retrying"), engine.output
        engine.write([entry("m", "marker"), entry("m2", "marker")])
        engine.wait_states({"m": "loaded", "m2": "loaded"})  # the reconcile loop is alive
