"""Faults through the bot: a `connector.message` event goes through the real router
(grambot/bot/router.py) to an inference provider that raises quoting its secret or never
answers, and to tools that raise quoting their secret or never return.

Each fault ends the turn with a short reply in the same chat that names what failed and holds
no secret; the next message of that chat is answered as usual; another chat is not held up by
a hanging provider; every instance stays loaded; the secret is in no reply, log record or
conversation file.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from grambot import CONNECTOR_MESSAGE
from grambot.core.instance import InstanceState
from grambot.engine import Engine
from tests.helpers import FIXTURE_PLUGINS, Workspace, entry, eventually_async
from tests.reliability.evidence import Evidence

FAULTY_PLUGINS = Path(__file__).resolve().parents[1] / "fixtures" / "faulty"
PLUGIN_DIRS = [str(FIXTURE_PLUGINS), str(FAULTY_PLUGINS)]
SECRET = "sk-grambot-bot-4e8d2a6c"
TOOL_MS = json.loads((FAULTY_PLUGINS / "deadline-tool" / "plugin.json").read_text())["timeoutMs"]
REPLY_TIMEOUT = 0.5
PLUGINS = [
    entry("chat", "fakechat"),
    entry("brain", "secret-holder", serve=True),
    entry("vault", "deadline-tool", tool_name="vault_tool", mode="raise"),
    entry("slow", "deadline-tool", tool_name="slow_tool", mode="hang"),
]
# (message, the reply it must get): each fault, then a message that must be answered as usual.
SCRIPT = [
    ("hello", "ok: hello"),
    ("fail", "Sorry, the inference provider 'brain' failed (RuntimeError)."),
    ("after a failing provider", "ok: after a failing provider"),
    ("hang", f"Sorry, the inference provider 'brain' did not answer within {REPLY_TIMEOUT:g} s."),
    ("after a hanging provider", "ok: after a hanging provider"),
    ("!vault_tool open", "tool result: tool 'vault_tool' failed (RuntimeError)"),
    ("after a failing tool", "ok: after a failing tool"),
    ("!slow_tool wait", "tool result: tool 'slow_tool' failed (StageTimeout)"),
    ("after a hanging tool", "ok: after a hanging tool"),
]


def _forms(secret: str) -> list[str]:
    """The value as text may show it: raw, and escaped as by repr() and by JSON."""
    return sorted({secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]})


def _sent(engine: Engine, chat: str) -> list[tuple[Any, ...]]:
    connector = engine.registries.connectors.get("chat")
    assert connector is not None
    return [s for s in connector.sent if s[0] == chat]  # type: ignore[attr-defined]


def _message(engine: Engine, text: str, chat: str) -> None:
    engine.queue.emit(
        "fakechat", "chat", CONNECTOR_MESSAGE, {"chatId": chat, "sender": "ada", "text": text}
    )


async def _say(engine: Engine, text: str, chat: str = "c1") -> tuple[str, float]:
    """Deliver `text` from `chat`; return the one reply it got there and how long it took."""
    loop = asyncio.get_running_loop()
    before = len(_sent(engine, chat))
    started = loop.time()
    _message(engine, text, chat)
    await eventually_async(
        lambda: len(_sent(engine, chat)) > before, 5.0, what=f"a reply to {text!r}"
    )
    took = loop.time() - started
    await asyncio.sleep(0.02)  # one reply per message, never two
    replies = _sent(engine, chat)[before:]
    assert len(replies) == 1, replies
    return str(replies[0][1]), took


@pytest.mark.parametrize("secret", [SECRET, "pa'ss\"w\\rd-\u00fcn\u00ef"], ids=["plain", "quotes"])
async def test_faults_through_the_bot_end_in_an_apology_and_the_chat_goes_on(
    secret: str,
    engine: Engine,
    workspace: Workspace,
    caplog: pytest.LogCaptureFixture,
    evidence: Evidence,
) -> None:
    for instance_id in ("brain", "vault"):
        engine.secrets.set(instance_id, "token", secret)  # type: ignore[attr-defined]
    await engine.apply(
        workspace.write(
            PLUGINS,
            pluginDirs=PLUGIN_DIRS,
            agent={"inference": "brain", "replyTimeoutSeconds": REPLY_TIMEOUT},
        )
    )
    ids = [p["instanceId"] for p in PLUGINS]
    assert sorted(engine.loaded_ids()) == sorted(ids)
    replies: list[str] = []
    took: dict[str, float] = {}
    with caplog.at_level(logging.DEBUG):
        for text, expected in SCRIPT:
            reply, took[text] = await _say(engine, text)
            assert reply == expected, (text, reply)
            replies.append(reply)
        # A hanging provider holds up its own chat only: another chat is answered meanwhile.
        _message(engine, "hang", "c1")
        reply, other_took = await _say(engine, "meanwhile", chat="c2")
        assert reply == "ok: meanwhile" and other_took < REPLY_TIMEOUT
        await eventually_async(lambda: len(_sent(engine, "c1")) == len(SCRIPT) + 1, 5.0)
        replies += [str(s[1]) for s in _sent(engine, "c1")[len(SCRIPT) :]]
    # The tool's deadline came from its manifest, not from the bot's reply timeout.
    assert TOOL_MS / 1000 * 0.9 <= took["!slow_tool wait"] < REPLY_TIMEOUT + TOOL_MS / 1000
    assert "tool 'slow_tool' timed out after" in caplog.text
    assert f"timed out after {TOOL_MS} ms" in caplog.text
    assert "bot: inference provider brain failed" in caplog.text
    assert "bot: tool vault_tool failed" in caplog.text
    for instance_id in ids:
        assert engine.state_of(instance_id) is InstanceState.LOADED, instance_id
    assert engine.event_engine.running
    # No secret in the chat, the logs or any file but the secrets store (conversations too).
    saved = engine.storage.db.run_sync(
        lambda conn: conn.execute("SELECT COUNT(*) FROM conversation").fetchone()[0]
    )
    assert saved, "the bot saved no conversation"  # in .scout/state.db, scanned below
    logged = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.stack_info or ''}" for r in caplog.records
    )
    secrets_file = engine.scout_dir / "secrets.json"
    for form in _forms(secret):
        assert all(form not in reply for reply in replies), form
        assert form not in caplog.text and form not in logged, form
        for path in workspace.root.rglob("*"):
            if path.is_file() and path != secrets_file:
                assert form.encode() not in path.read_bytes(), path
    kind = "plain" if secret == SECRET else "with quotes, a backslash and non-ASCII letters"
    evidence.add(
        "faults through the bot",
        "connector.message events through the real bot router: the inference provider raises "
        f"quoting its secret ({kind}), then never answers; a tool raises quoting its secret, "
        f"then one never returns (manifest timeoutMs {TOOL_MS}); a message after each fault; "
        "a second chat while the provider hangs",
        "each fault got one reply in its chat naming what failed (provider: 'Sorry, ...'; "
        "tool: an error result the model answered from); the next message was answered; the "
        "other chat was answered during the hang; every instance stayed loaded; the secret is "
        "in no reply, log record or file (conversations included) but .scout/secrets.json",
        messages=len(SCRIPT) + 2,
        hanging_tool_reply_s=round(took["!slow_tool wait"], 3),
        hanging_provider_reply_s=round(took["hang"], 3),
    )
