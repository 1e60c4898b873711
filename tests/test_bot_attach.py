"""The bot attaches to the engine from outside (`attach_bot`): the engine imports nothing of
grambot.bot, runs its instances without a bot (messages wait in the inbox), and a bot attached
to the next engine on the workspace answers what waited."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from grambot.bot import attach_bot
from grambot.engine import Engine
from grambot.registries.connectors import IncomingMessage
from tests.helpers import Workspace, entry, eventually_async

PLUGINS = [entry("chat", "fakechat"), entry("brain", "scripted")]


def test_the_engine_imports_nothing_of_the_bot() -> None:
    code = "import sys, grambot.engine; print(sorted(m for m in sys.modules if 'grambot.bot' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_without_a_bot_instances_run_and_messages_wait_for_one(
    workspace: Workspace,
) -> None:
    settings = workspace.write(PLUGINS, agent={"inference": "brain"})
    bare = Engine(workspace.root, builtin_dir=None, entry_points=False)
    await bare.event_engine.start()
    try:
        assert await bare.apply(settings)
        assert sorted(bare.loaded_ids()) == ["brain", "chat"]
        connector = bare.registries.connectors.get("chat")
        assert connector is not None
        api = connector.wrapped.api  # type: ignore[attr-defined]
        assert await api.inbox.accept(IncomingMessage("chat", "c1", "ada", "hello", "m1"))
        await bare.reconcile()  # nothing attached: still reconciles
        await asyncio.sleep(0.3)
        assert connector.sent == []  # type: ignore[attr-defined]
        assert await bare.storage.inbox.counts() == {"accepted": 1}
        assert bare.inbox_status() == {}
        assert bare.schedule_status()["jobs"] == 0
    finally:
        await bare.stop(drain_deadline=1.0)

    engine = Engine(workspace.root, builtin_dir=None, entry_points=False)
    bot = attach_bot(engine)
    with pytest.raises(RuntimeError):
        engine.attach(bot)  # once
    await engine.event_engine.start()
    try:
        await engine.apply(settings)
        connector = engine.registries.connectors.get("chat")
        assert connector is not None
        await eventually_async(lambda: len(connector.sent) == 1, timeout=10.0)  # type: ignore[attr-defined]
        assert connector.sent[0][:2] == ("c1", "ok: hello")  # type: ignore[attr-defined]
        await eventually_async(lambda: engine.inbox_status().get("pending") == 0, timeout=10.0)
    finally:
        await engine.stop(drain_deadline=1.0)
