"""`grambot backup` and `grambot remove ID --purge`; reminders and /tz through the bot."""

from __future__ import annotations

import asyncio
import stat
import tarfile
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from grambot import CONNECTOR_MESSAGE
from grambot.bot import Bot
from grambot.cli import main
from grambot.engine import Engine
from grambot.registries.connectors import IncomingMessage
from grambot.secrets.store import FileSecretsStore
from grambot.storage import Job, open_storage
from tests.helpers import Workspace, entry, eventually_async
from tests.runproc import workspace_with


def grambot(ws: Path, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--workspace", str(ws)])


def _seed(root: Path) -> None:
    workspace_with(root, [entry("a", "probe"), entry("b", "probe")])
    secrets = FileSecretsStore(root / ".scout" / "secrets.json")
    secrets.set("a", "token", "t-a")
    secrets.set("b", "token", "t-b")
    for instance in ("a", "b"):
        (root / ".scout" / "plugins" / instance).mkdir(parents=True)
        (root / ".scout" / "plugins" / instance / "file.txt").write_text(instance)

    async def fill() -> None:
        state = open_storage(root / ".scout" / "state.db")
        try:
            for instance in ("a", "b"):
                await state.kv.set(instance, "k", instance)
                await state.inbox.accept(IncomingMessage(instance, "c", "u", "hi", "1"))
                await state.schedule.put(Job(instance, "j", "every", "60.0", time.time()))
                await state.schedule.put(Job("@bot", f"chat:{instance}:c:r1", "every", "60", 1.0))
        finally:
            await state.close()

    asyncio.run(fill())


def test_backup_holds_a_consistent_database_and_the_workspace(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    _seed(root)
    (root / ".scout" / "status.json").write_text("{}")
    out = tmp_path / "b.tar.gz"
    result = grambot(root, "backup", str(out))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with tarfile.open(out) as archive:
        names = archive.getnames()
        archive.extractall(tmp_path / "restored", filter="data")
    assert ".scout/settings.json" in names and ".scout/secrets.json" in names
    assert ".scout/state.db" in names and ".scout/status.json" not in names
    assert ".scout/plugins/a/file.txt" in names
    with open_storage(tmp_path / "restored" / ".scout" / "state.db") as state:
        assert len(state.inbox_entries()) == 2


def test_remove_purge_deletes_everything_kept_for_the_instance(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    _seed(root)
    kept = grambot(root, "remove", "b")
    assert kept.exit_code == 0 and "kept its data" in kept.output
    assert (root / ".scout" / "plugins" / "b").exists()
    result = grambot(root, "remove", "a", "--purge")
    assert result.exit_code == 0, result.output
    assert "data folder" in result.output and "1 secret(s)" in result.output
    assert not (root / ".scout" / "plugins" / "a").exists()
    secrets = FileSecretsStore(root / ".scout" / "secrets.json")
    assert secrets.keys("a") == [] and secrets.keys("b") == ["token"]
    with open_storage(root / ".scout" / "state.db") as state:
        owners = {e.message.connector_id for e in state.inbox_entries()}
        assert owners == {"b"}
        jobs = state.db.run_sync(lambda c: c.execute("SELECT owner, name FROM jobs").fetchall())
        assert sorted(jobs) == [("@bot", "chat:b:c:r1"), ("b", "j")]


# -- reminders through the bot ----------------------------------------------------------------


async def _say(engine: Engine, text: str, chat: str = "c1") -> str:
    connector: Any = engine.registries.connectors.get("chat")
    before = len(connector.sent)
    engine.queue.emit("fakechat", "chat", CONNECTOR_MESSAGE, {"chatId": chat, "text": text})
    for _ in range(500):
        if len(connector.sent) > before:
            return str(connector.sent[before][1])
        await asyncio.sleep(0.01)
    raise AssertionError(f"no reply to {text!r}")


async def test_remind_list_cancel_tz_and_forget(engine: Engine, workspace: Workspace) -> None:
    plugins = [entry("chat", "fakechat"), entry("brain", "scripted")]
    await engine.apply(workspace.write(plugins, agent={"inference": "brain"}))
    assert await _say(engine, "/tz") == "This chat's time zone: UTC."
    refused = await _say(engine, "/tz Mars/Olympus")
    assert refused.startswith("unknown time zone 'Mars/Olympus'")
    assert await _say(engine, "/tz Europe/Berlin") == "Time zone set to Europe/Berlin."
    set_reply = await _say(engine, "/remind tomorrow 8:00 call Ada")  # in Berlin
    assert set_reply.startswith("Reminder set (at ") and "Europe/Berlin" in set_reply
    spam = await _say(engine, "/remind every 10s spam")
    assert spam.startswith("recurring reminders are"), spam
    assert (await _say(engine, "/remind in 1s tea")).startswith("Reminder set")
    listing = await _say(engine, "/reminders")
    assert "call Ada" in listing and "tea" in listing
    assert "call Ada" not in await _say(engine, "/reminders", chat="other")  # its own only
    connector: Any = engine.registries.connectors.get("chat")
    await eventually_async(
        lambda: any(s[1] == "⏰ Reminder: tea" for s in connector.sent), timeout=3
    )
    assert any(s[0] == "c1" and s[1] == "⏰ Reminder: tea" for s in connector.sent)
    rid = listing.split("\n")[1].split(":")[0]
    cancel = await _say(engine, f"/reminders cancel {rid}")
    assert cancel == "Cancelled 1 reminder(s)."
    await _say(engine, "/remind daily 9:00 news")
    assert (await _say(engine, "/forget")).startswith("Forgot this chat's conversation and")
    assert await _say(engine, "/reminders") == "No reminders in this chat."
    assert await _say(engine, "/tz") == "This chat's time zone: UTC."


async def test_the_system_prompt_carries_the_time_and_zone(
    engine: Engine, bot: Bot, workspace: Workspace
) -> None:
    plugins = [entry("chat", "fakechat"), entry("brain", "scripted")]
    await engine.apply(
        workspace.write(plugins, agent={"inference": "brain", "timeZone": "Asia/Tokyo"})
    )
    prompt = bot.turn.prompt(("chat", "c1"), engine.agent)
    assert "Current time: " in prompt and "(Asia/Tokyo, " in prompt and "+09:00" in prompt
