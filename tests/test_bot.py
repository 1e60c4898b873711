"""The bot layer: routing, tools, commands, failures and persistence, through a real engine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from grambot import CONNECTOR_MESSAGE
from grambot.bot import attach_bot
from grambot.engine import Engine
from tests.helpers import Workspace, entry, eventually_async
from tests.runproc import EngineProcess

REPO = Path(__file__).resolve().parent.parent
BOT_PLUGINS = [
    entry("chat", "fakechat"),
    entry("brain", "scripted"),
    entry("probe-tool", "probe", tool_name="echo_tool"),
]


async def _say(engine: Engine, text: str, chat: str = "c1", expect: int = 1) -> list[Any]:
    """Deliver `text` from chat `chat` and wait for `expect` new replies there."""
    connector = engine.registries.connectors.get("chat")
    assert connector is not None
    before = len([s for s in connector.sent if s[0] == chat])
    engine.queue.emit(
        "fakechat",
        "chat",
        CONNECTOR_MESSAGE,
        {"chatId": chat, "sender": "ada", "text": text, "messageId": "m1"},
    )

    def replies() -> list[Any]:
        mine = [s for s in connector.sent if s[0] == chat]
        return mine[before:] if len(mine) >= before + expect else []

    return await eventually_async(replies, timeout=5, what=f"{expect} replies to {text!r}")


async def _bot(engine: Engine, workspace: Workspace, *extra: dict[str, Any], **agent: Any) -> None:
    await engine.apply(
        workspace.write([*BOT_PLUGINS, *extra], agent={"inference": "brain", **agent})
    )


async def test_reply_goes_back_to_the_same_chat(engine: Engine, workspace: Workspace) -> None:
    await _bot(engine, workspace)
    (reply,) = await _say(engine, "hi there")
    assert reply[0] == "c1" and reply[1] == "ok: hi there" and reply[3] == "m1"


async def test_tool_calls_run_through_the_registry_and_feed_back(
    engine: Engine, workspace: Workspace
) -> None:
    await _bot(engine, workspace)
    (reply,) = await _say(engine, "!echo_tool ping")
    assert reply[1] == "tool result: ping"


async def test_step_limit_ends_a_tool_loop_with_an_apology(
    engine: Engine, workspace: Workspace
) -> None:
    await _bot(engine, workspace, maxToolSteps=2)
    (reply,) = await _say(engine, "loop")
    assert reply[1] == "Sorry, I stopped after 2 tool steps without an answer."


async def test_inference_error_apologises_without_secrets_and_the_next_message_works(
    engine: Engine, workspace: Workspace
) -> None:
    await _bot(engine, workspace)
    (apology,) = await _say(engine, "fail")
    assert apology[1] == "Sorry, the inference provider 'brain' failed (RuntimeError)."
    assert "sk-very-secret" not in apology[1]
    (reply,) = await _say(engine, "still there?")
    assert reply[1] == "ok: still there?"


async def test_a_slow_chat_does_not_block_another(engine: Engine, workspace: Workspace) -> None:
    await _bot(engine, workspace, replyTimeoutSeconds=3)
    connector = engine.registries.connectors.get("chat")
    engine.queue.emit("fakechat", "chat", CONNECTOR_MESSAGE, {"chatId": "slow", "text": "slow"})
    (reply,) = await _say(engine, "quick", chat="fast")
    assert reply[1] == "ok: quick"
    assert not [s for s in connector.sent if s[0] == "slow"]  # still thinking
    await eventually_async(lambda: [s for s in connector.sent if s[0] == "slow"], timeout=5)
    slow = [s for s in connector.sent if s[0] == "slow"]
    assert slow and slow[0][1] == "Sorry, the inference provider 'brain' did not answer within 3 s."


async def test_messages_of_one_chat_are_answered_in_order(
    engine: Engine, workspace: Workspace
) -> None:
    await _bot(engine, workspace)
    connector = engine.registries.connectors.get("chat")
    for n in range(20):
        engine.queue.emit("fakechat", "chat", CONNECTOR_MESSAGE, {"chatId": "o", "text": f"m{n}"})
    await eventually_async(lambda: len([s for s in connector.sent if s[0] == "o"]) == 20, timeout=5)
    assert [s[1] for s in connector.sent if s[0] == "o"] == [f"ok: m{n}" for n in range(20)]


async def test_reset_and_history_survive_a_restart(workspace: Workspace) -> None:
    for expected in ("1 user messages", "3 user messages"):
        engine = Engine(workspace.root, builtin_dir=None, entry_points=False)
        attach_bot(engine)
        await engine.event_engine.start()
        try:
            await _bot(engine, workspace)
            if expected.startswith("3"):
                (reply,) = await _say(engine, "count")
            else:
                (reply,) = await _say(engine, "count")
                await _say(engine, "hello")
            assert reply[1] == expected
        finally:
            await engine.stop()
    engine = Engine(workspace.root, builtin_dir=None, entry_points=False)
    attach_bot(engine)
    await engine.event_engine.start()
    try:
        await _bot(engine, workspace)
        (done,) = await _say(engine, "/reset")
        assert done[1] == "Conversation forgotten."
        (reply,) = await _say(engine, "count")
        assert reply[1] == "1 user messages"
    finally:
        await engine.stop()


async def test_image_command_and_tool_send_files(engine: Engine, workspace: Workspace) -> None:
    await _bot(engine, workspace, entry("pics", "fakeimage"))
    (reply,) = await _say(engine, "/image a red fox")
    assert reply[1] == "Here is your image for: a red fox"
    (attachment,) = reply[2]
    assert attachment.mime_type == "image/png" and Path(attachment.path).is_file()
    assert Path(attachment.path).parent == workspace.data_dir("pics")
    (reply,) = await _say(engine, "!image_generate a blue fox")
    assert reply[1] == "tool result: generated 1 image(s); they will be sent"
    assert len(reply[2]) == 1


async def test_image_without_provider_and_missing_inference_apologise(
    engine: Engine, workspace: Workspace
) -> None:
    plugins = [entry("chat", "fakechat"), entry("nobody", "scripted", enabled=False)]
    await engine.apply(workspace.write(plugins, agent={"inference": "nobody"}))
    (reply,) = await _say(engine, "/image cat")
    assert reply[1] == "Sorry, no image provider is enabled."
    (reply,) = await _say(engine, "hello")
    assert reply[1] == "Sorry, the inference provider 'nobody' is not loaded."


async def test_help_lists_provider_and_tools(engine: Engine, workspace: Workspace) -> None:
    await _bot(engine, workspace, tools=["echo_tool"])
    (reply,) = await _say(engine, "/help")
    assert "/reset" in reply[1] and "/image" in reply[1]
    assert "Scripted ('brain')" in reply[1] and "echo_tool" in reply[1]


# The offline bot of the README (its example workspace, minus the disabled built-ins), built
# here: the repository's own .scout/ may be in use by a bot or edited by the walkthrough.
OFFLINE = {
    "pluginDirs": ["plugins"],
    "agent": {"inference": "echo", "maxToolSteps": 5},
    "plugins": [
        entry("console", "console", prompt="you> ", botPrefix="bot> "),
        entry("echo", "echo", mode="repeat"),
        entry("hello", "hello", greeting="Hello"),
    ],
}


def _offline_workspace(tmp_path: Path) -> Path:
    (tmp_path / ".scout").mkdir()
    (tmp_path / ".scout" / "settings.json").write_text(json.dumps(OFFLINE, indent=2))
    shutil.copytree(REPO / "plugins" / "hello", tmp_path / "plugins" / "hello")
    return tmp_path


def _chat(workspace: Path, lines: str) -> str:
    """`grambot run` with `lines` on stdin: what it printed once it answered each; it must exit 0
    on SIGTERM."""
    engine = EngineProcess(workspace, stdin_text=lines)
    try:
        engine.wait_for_log("bot> ", timeout=20, count=len(lines.splitlines()))
    finally:
        code = engine.stop(20)
    assert code == 0, engine.output
    return engine.output


def test_offline_default_answers_each_scripted_line(tmp_path: Path) -> None:
    workspace = _offline_workspace(tmp_path)
    out = _chat(workspace, "hello there\n!hello Ada\n")
    assert "bot> hello there\n" in out
    assert "bot> The tool said: Hello, Ada!\n" in out


@pytest.mark.parametrize("mode", ["reverse"])
def test_offline_echo_mode_is_a_setting(tmp_path: Path, mode: str) -> None:
    workspace = _offline_workspace(tmp_path)
    settings_file = workspace / ".scout" / "settings.json"
    data = json.loads(settings_file.read_text())
    for plugin in data["plugins"]:
        if plugin["instanceId"] == "echo":
            plugin["settings"]["mode"] = mode
    settings_file.write_text(json.dumps(data))
    out = _chat(workspace, "abc\n")
    assert "bot> cba\n" in out
