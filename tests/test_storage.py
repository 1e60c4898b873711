"""The SQLite default of the storage seams, on real files."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from grambot.registries.connectors import Attachment, IncomingMessage
from grambot.registries.inference import ChatMessage, ToolCall
from grambot.storage import (
    MISSING,
    SCHEMA_VERSION,
    Finished,
    Job,
    SchemaTooNew,
    SqliteStorage,
    StateError,
    open_storage,
)
from grambot.storage.conversations import TRIM_EVERY
from grambot.storage.database import MIGRATIONS
from grambot.storage.sqlite import encode_message
from tests.helpers import eventually_async


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    s = SqliteStorage(tmp_path / "state.db")
    try:
        yield s
    finally:
        await s.close()


def msg(
    chat: str = "c1", mid: str | None = "1", text: str = "hi", conn: str = "tg"
) -> IncomingMessage:
    return IncomingMessage(conn, chat, "ada", text, mid, extra={"updateId": 7})


async def test_kv_values_ttl_prefix_and_compare_and_set(state: SqliteStorage) -> None:
    kv = state.kv
    assert await kv.get("ns", "a") is MISSING
    await kv.set("ns", "a", {"n": 1, "l": [1, "x"]})
    await kv.set("ns", "a_b", 2)
    await kv.set("ns", "a%c", 3)
    await kv.set("other", "a", "not mine")
    assert await kv.get("ns", "a") == {"n": 1, "l": [1, "x"]}
    assert await kv.items("ns", "a_") == [("a_b", 2)]  # _ and % are not wildcards
    assert await kv.items("ns", "a%") == [("a%c", 3)]
    assert [k for k, _ in await kv.items("ns")] == ["a", "a%c", "a_b"]
    await kv.set("ns", "short", 1, ttl=0.05)
    assert await kv.get("ns", "short") == 1
    await asyncio.sleep(0.08)
    assert await kv.get("ns", "short") is MISSING
    assert "short" not in [k for k, _ in await kv.items("ns")]
    assert await kv.compare_and_set("ns", "c", MISSING, 1)
    assert not await kv.compare_and_set("ns", "c", MISSING, 2)
    assert await kv.compare_and_set("ns", "c", 1, 2)
    assert await kv.get("ns", "c") == 2
    assert await kv.delete("ns", "c") and not await kv.delete("ns", "c")
    with pytest.raises(TypeError):
        await kv.set("ns", "bad", object())
    assert await kv.drop_namespace("ns") >= 3
    assert await kv.items("ns") == []
    assert await kv.get("other", "a") == "not mine"


async def test_concurrent_writes_share_commits(state: SqliteStorage) -> None:
    await state.kv.set("warm", "up", 1)
    batches = state.db.batches
    await asyncio.gather(*(state.kv.set("ns", f"k{i}", i) for i in range(500)))
    assert len(await state.kv.items("ns")) == 500
    assert state.db.batches - batches < 100  # group commit: far fewer commits than writes


async def test_a_failing_operation_is_undone_alone(state: SqliteStorage) -> None:
    def boom(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO kv (namespace, key, value) VALUES ('ns', 'half', '1')")
        raise ValueError("boom")

    results = await asyncio.gather(
        state.kv.set("ns", "before", 1),
        state.db.run(boom),
        state.kv.set("ns", "after", 2),
        return_exceptions=True,
    )
    assert isinstance(results[1], ValueError)
    assert [k for k, _ in await state.kv.items("ns")] == ["after", "before"]


async def test_inbox_dedupes_claims_in_order_and_recovers(state: SqliteStorage) -> None:
    inbox = state.inbox
    assert await inbox.accept(msg(mid="1", text="one"))
    assert not await inbox.accept(msg(mid="1", text="one again"))  # redelivered upstream
    assert await inbox.accept(msg(mid="2", text="two"))
    assert await inbox.accept(msg(chat="c2", mid="1", text="other chat"))
    assert await inbox.accept(msg(mid=None, text="no id"))
    assert await inbox.accept(msg(mid=None, text="no id"))  # never deduplicated
    assert await inbox.pending_chats() == [("tg", "c1"), ("tg", "c2")]
    first = await inbox.claim_next("tg", "c1")
    assert first is not None and first.message.text == "one" and first.state == "handling"
    assert first.message.extra == {"updateId": 7}
    second = await inbox.claim_next("tg", "c1")
    assert second is not None and second.message.text == "two"
    await inbox.mark_sending(first.id)
    await inbox.mark_done(first.id)
    await inbox.mark_sending(second.id)  # then the process dies
    third = await inbox.claim_next("tg", "c1")  # handling when it dies
    assert third is not None
    uncertain = await inbox.recover()
    assert [e.message.text for e in uncertain] == ["two"]
    counts = await inbox.counts()
    assert counts == {"uncertain": 1, "accepted": 3}  # done is not counted (the bulk)
    again = await inbox.claim_next("tg", "c1")
    assert again is not None and again.id == third.id  # handled again, in order
    assert await inbox.drop_connector("tg") == 5


async def test_attachments_survive_the_inbox(state: SqliteStorage, tmp_path: Path) -> None:
    message = IncomingMessage(
        "tg", "c", "ada", "look", "9", (Attachment(tmp_path / "p.png", "image/png", "p.png"),)
    )
    await state.inbox.accept(message)
    entry = await state.inbox.claim_next("tg", "c")
    assert entry is not None and entry.message == message


async def test_conversations_append_keep_load_and_age(state: SqliteStorage) -> None:
    conv = state.conversations
    turn = [
        ChatMessage("user", "hi"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("t1", "echo", {"x": [1]}),)),
        ChatMessage("tool", "r", tool_call_id="t1", is_error=True),
    ]
    await conv.append("tg", "c", turn, keep=100)
    assert await conv.load("tg", "c", limit=10) == turn
    sent = [f"m{n}" for n in range(3 * TRIM_EVERY)]
    for text in sent:
        await conv.append("tg", "c", [ChatMessage("user", text)], keep=5)
    kept = [m.content for m in await conv.load("tg", "c", limit=100)]
    assert 5 <= len(kept) < 5 + TRIM_EVERY  # trimmed to 5 every TRIM_EVERY rows
    assert kept == sent[-len(kept) :]
    assert [m.content for m in await conv.load("tg", "c", limit=2)] == sent[-2:]
    import time

    assert await conv.load("tg", "c", limit=10, since=time.time() + 10) == []
    assert await conv.prune(time.time() + 10) == len(kept)
    await conv.append("tg", "c", [ChatMessage("user", "x")], keep=5)
    await conv.forget("tg", "c")
    assert await conv.load("tg", "c", limit=10) == []


async def test_a_turn_finishes_the_last_message_and_claims_the_next_at_once(
    state: SqliteStorage,
) -> None:
    inbox, turns = state.inbox, state.turns
    for n in range(3):
        await inbox.accept(msg(mid=str(n), text=f"q{n}"))
    batches = state.db.batches
    entry, history = await turns.next_turn("tg", "c1", history=10)
    assert entry is not None and entry.message.text == "q0" and history == []
    await inbox.mark_sending(entry.id)
    said = (ChatMessage("user", "q0"), ChatMessage("assistant", "a0"))
    following, history = await turns.next_turn(
        "tg", "c1", finished=Finished(entry.id, said, keep=100), history=10
    )
    assert following is not None and following.message.text == "q1"
    assert history == list(said)  # the finished turn is part of the next one's history
    assert state.db.batches - batches == 3  # one transaction per step
    assert await inbox.counts() == {"handling": 1, "accepted": 1}  # q0 done: not counted
    nothing, history = await turns.next_turn(
        "tg", "c1", finished=Finished(following.id, (), keep=100), claim=False, history=10
    )
    assert nothing is None and history == []
    assert await inbox.counts() == {"accepted": 1}  # q1 done, q2 left waiting


async def test_histories_are_right_after_a_rolled_back_append(state: SqliteStorage) -> None:
    """Decoded messages are kept by row id; an append undone by a failure had taken ids that
    the next append gets again: what is loaded is what was written last under them."""
    conv = state.conversations
    await conv.append("tg", "c", [ChatMessage("user", "kept")], keep=100)
    unwritable = ChatMessage("user", object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # its first message was written, then the second failed
        await conv.append("tg", "c", [ChatMessage("user", "undone"), unwritable], keep=100)
    await conv.append("tg", "c", [ChatMessage("user", "after")], keep=100)
    assert [m.content for m in await conv.load("tg", "c", limit=10)] == ["kept", "after"]


async def test_checkpoints_run_on_a_thread_of_their_own(state: SqliteStorage) -> None:
    """The writing connection never checkpoints in a commit; the checkpointer does it soon
    after commits, so the log is copied back into the database file meanwhile."""
    autocheckpoint = await state.db.run_raw(
        lambda conn: conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    )
    assert autocheckpoint == 0
    checkpointer = state.db._checkpointer
    assert checkpointer is not None
    before = checkpointer.checkpoints
    await asyncio.gather(*(state.kv.set("ns", f"k{i}", "x" * 500) for i in range(200)))
    await eventually_async(lambda: checkpointer.checkpoints > before, timeout=3)
    assert checkpointer.checkpoints > before
    busy, in_log, copied = await state.db.run_raw(
        lambda conn: conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    )
    assert busy == 0 and copied == in_log


async def test_every_chat_is_trimmed_whatever_the_order_of_appends(state: SqliteStorage) -> None:
    """Chats taking turns in a fixed order (row ids in the same pattern each round) are each
    trimmed all the same: the count is per chat."""
    conv = state.conversations
    turn = [ChatMessage("user", "q"), ChatMessage("assistant", "a")]
    for _ in range(4 * TRIM_EVERY):
        await asyncio.gather(
            *(conv.append("tg", f"c{n}", turn, keep=10) for n in range(TRIM_EVERY))
        )
    for n in range(TRIM_EVERY):
        assert 10 <= len(await conv.load("tg", f"c{n}", limit=1000)) < 10 + TRIM_EVERY


async def test_schedule_jobs_by_owner_and_prefix(state: SqliteStorage) -> None:
    job = Job("inst", "daily", "cron", "0 8 * * *", 123.0, payload={"a": 1}, tz="Europe/Berlin")
    await state.schedule.put(job)
    await state.schedule.put(Job("inst", "other", "every", "60", 5.0))
    await state.schedule.put(Job("inst2", "daily", "at", "2030-01-01T00:00:00+00:00", 9.0))
    assert await state.schedule.get("inst", "daily") == job
    assert [j.name for j in await state.schedule.jobs("inst")] == ["daily", "other"]
    assert [j.name for j in await state.schedule.jobs("inst", "da")] == ["daily"]
    assert len(await state.schedule.jobs()) == 3
    assert await state.schedule.remove("inst", "other")
    assert await state.schedule.drop_owner("inst") == 1


def test_the_file_is_private_wal_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with open_storage(path) as state:
        assert state.inbox_counts() == {}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


def test_a_version_1_database_is_migrated_with_its_inbox(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute("PRAGMA user_version=1")
    data = encode_message(msg(mid="1", text="waiting"))
    for key, state_name in (("1", "accepted"), ("2", "handling"), ("3", "done")):
        conn.execute(
            "INSERT INTO inbox (connector, chat, message_key, state, message, accepted_at, "
            "updated_at) VALUES ('tg', 'c1', ?, ?, ?, 1, 1)",
            (key, state_name, data),
        )
    conn.commit()
    conn.close()
    with open_storage(path) as state:
        assert state.inbox_counts() == {"accepted": 1, "handling": 1}
        indexes = state.db.run_sync(
            lambda conn: {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        )
        assert {"inbox_waiting", "inbox_open", "inbox_aged"} <= indexes
        assert not {"inbox_queue", "inbox_state"} & indexes
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    conn.close()


def test_a_database_from_a_newer_grambot_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    before = path.read_bytes()
    state = open_storage(path)
    with pytest.raises(SchemaTooNew) as info:
        state.open()
    assert "newer grambot" in str(info.value) and str(path) in str(info.value)
    assert f"version {SCHEMA_VERSION + 1}" in str(info.value)
    with pytest.raises(StateError):
        state.inbox_counts()
    assert path.read_bytes() == before


def test_backup_and_purge(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with open_storage(path) as state:
        state.db.run_sync(lambda conn: conn.execute("INSERT INTO kv VALUES ('tg', 'k', '1', NULL)"))
        state.db.run_sync(
            lambda conn: conn.execute("INSERT INTO kv VALUES ('other', 'k', '1', NULL)")
        )
        state.backup_to(tmp_path / "copy.db")
        removed = state.purge_instance("tg")
        assert removed["store value(s)"] == 1
    with open_storage(tmp_path / "copy.db") as copy:
        rows = copy.db.run_sync(lambda conn: conn.execute("SELECT namespace FROM kv").fetchall())
        assert sorted(r[0] for r in rows) == ["other", "tg"]
