"""Crash tests: a real `grambot run` with the telegram and anthropic built-ins on
local fakes, 200 messages across 20 chats, killed and restarted three times.

SIGKILL: no message gets two replies, every message without a reply is `uncertain`, there are
at most as many `uncertain` as chats with a turn in progress at the kills, and the replies of a
chat come in order. SIGTERM: every message gets exactly one reply. After each kill the database
passes `PRAGMA integrity_check`. The kill points are drawn from a seed, printed (and in every
assertion message) so that a failure can be replayed: GRAMBOT_CRASH_SEED=<seed>.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from grambot.secrets.store import FileSecretsStore
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.base import Request, Response
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import entry, eventually
from tests.runproc import EngineProcess, workspace_with

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

TOKEN = "424242:AAH-crash-test-token"
API_KEY = "sk-ant-crash-test"
CHATS = 20
MESSAGES = 200
KILLS = 3
TEXT = re.compile(r"^c(\d+):m(\d+)$")


class SlowModel(FakeAnthropic):
    """Echoes after a random 0-200 ms; remembers which message texts reached the model."""

    def __init__(self, seed: int) -> None:
        super().__init__(API_KEY)
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self.asked: list[tuple[float, str]] = []

    def handle(self, request: Request) -> Response:
        response = super().handle(request)
        if request.path == "/v1/messages" and response.status == 200:
            text = json.loads(response.body)["content"][0]["text"].removeprefix("echo: ")
            with self._rng_lock:
                response.delay = self._rng.uniform(0.0, 0.2)
                self.asked.append((time.monotonic(), text))
        return response


@pytest.fixture
def seed() -> int:
    value = int(os.environ.get("GRAMBOT_CRASH_SEED") or random.randrange(1 << 30))
    print(f"crash test seed: {value} (replay with GRAMBOT_CRASH_SEED={value})")
    return value


@pytest.fixture
def fakes(seed: int) -> Iterator[tuple[FakeTelegram, SlowModel]]:
    with FakeTelegram() as telegram, SlowModel(seed) as model:
        telegram.add_bot(TOKEN)
        telegram.max_long_poll = 0.5
        yield telegram, model


def _workspace(root: Path, telegram: FakeTelegram, model: SlowModel) -> Path:
    users = [1000 + n for n in range(CHATS)]
    tg = telegram.plugin_settings(*users, requestTimeout=5.0, backoffInitial=0.05, backoffMax=0.3)
    claude = {"baseUrl": model.url, "maxRetries": 0, "timeout": 10}
    workspace_with(
        root,
        [entry("tg", "telegram", **tg), entry("claude", "anthropic", **claude)],
        agent={"inference": "claude"},
    )
    store = FileSecretsStore(root / ".scout" / "secrets.json")
    store.set("tg", "botToken", TOKEN)
    store.set("claude", "apiKey", API_KEY)
    return root


class Feeder(threading.Thread):
    """Pushes the 200 messages over a few seconds, in order within each chat."""

    def __init__(self, telegram: FakeTelegram, rng: random.Random, seconds: float) -> None:
        super().__init__(daemon=True)
        self.telegram = telegram
        order = [n % CHATS for n in range(MESSAGES)]
        rng.shuffle(order)
        self.order = order
        self.gaps = [rng.uniform(0, 2 * seconds / MESSAGES) for _ in order]

    def run(self) -> None:
        count: dict[int, int] = defaultdict(int)
        for chat, gap in zip(self.order, self.gaps, strict=True):
            time.sleep(gap)
            n = count[chat]
            count[chat] += 1
            self.telegram.push_message(TOKEN, f"c{chat}:m{n}", user_id=1000 + chat)


def _replies(telegram: FakeTelegram) -> list[tuple[int, str]]:
    out = []
    for sent in telegram.sent(TOKEN, "sendMessage"):
        out.append((int(sent["chat_id"]) - 1000, str(sent["text"]).removeprefix("echo: ")))
    return out


def _in_progress(telegram: FakeTelegram, model: SlowModel) -> int:
    """Chats with a message the model was asked about and whose reply has not gone out."""
    replied = {text for _, text in _replies(telegram)}
    busy = {TEXT.match(t).group(1) for _, t in model.asked if t not in replied and TEXT.match(t)}
    return len(busy)


def _integrity(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def _start(root: Path) -> EngineProcess:
    proc = EngineProcess(root, "--shutdown-timeout", "20", "--heartbeat", "0.5")
    proc.wait_for_log("grambot ready", timeout=30)
    return proc


def _inbox_states(root: Path) -> dict[str, str]:
    from grambot.storage import open_storage

    with open_storage(root / ".scout" / "state.db") as state:
        return {e.message.text: e.state for e in state.inbox_entries()}


def _run(tmp_path: Path, fakes: tuple[FakeTelegram, SlowModel], seed: int, how: int) -> None:
    telegram, model = fakes
    rng = random.Random(seed)
    root = _workspace(tmp_path, telegram, model)
    db = root / ".scout" / "state.db"
    feeder = Feeder(telegram, rng, seconds=15.0)
    busy_at_kills: list[int] = []
    proc = _start(root)
    procs = [proc]
    feeder.start()
    try:
        for kill in range(KILLS):
            time.sleep(rng.uniform(1.0, 3.5))
            if how == signal.SIGKILL:
                busy_at_kills.append(_in_progress(telegram, model))
            print(f"kill {kill + 1}: signal {how} at {len(_replies(telegram))} replies")
            proc.signal(how)
            proc.proc.wait(30)
            proc.kill()
            assert _integrity(db) == "ok", f"seed {seed}: integrity after kill {kill + 1}"
            proc = _start(root)
            procs.append(proc)
        feeder.join(30)
        everything = {f"c{c}:m{n}" for c in range(CHATS) for n in range(MESSAGES // CHATS)}

        def settled() -> bool:
            answered = {t for _, t in _replies(telegram)}
            status = proc.status() or {}
            pending = (status.get("inbox") or {}).get("pending", 1)
            return pending == 0 and len(answered) >= len(everything) - sum(busy_at_kills)

        eventually(settled, 60, what="every message answered or uncertain")
        time.sleep(1.0)
        assert proc.stop(30) == 0
    finally:
        for p in procs:
            p.kill()
    replies = _replies(telegram)
    texts = [t for _, t in replies]
    doubles = sorted({t for t in texts if texts.count(t) > 1})
    assert not doubles, f"seed {seed}: two replies to {doubles}"
    by_chat: dict[int, list[int]] = defaultdict(list)
    for chat, text in replies:
        match = TEXT.match(text)
        assert match and int(match.group(1)) == chat, f"seed {seed}: reply {text!r} in chat {chat}"
        by_chat[chat].append(int(match.group(2)))
    for chat, numbers in by_chat.items():
        assert numbers == sorted(numbers), f"seed {seed}: chat {chat} out of order: {numbers}"
    missing = everything - set(texts)
    states = _inbox_states(root)
    uncertain = {t for t, s in states.items() if s == "uncertain"}
    if how == signal.SIGTERM:
        assert not missing, f"seed {seed}: no reply to {sorted(missing)}"
        assert not uncertain, f"seed {seed}: uncertain after graceful restarts: {uncertain}"
    else:
        assert missing <= uncertain, f"seed {seed}: lost: {sorted(missing - uncertain)}"
        assert len(uncertain) <= sum(busy_at_kills), (
            f"seed {seed}: {len(uncertain)} uncertain, {busy_at_kills} chats busy at the kills"
        )
    assert _integrity(db) == "ok"
    print(f"seed {seed}: {len(replies)} replies, {len(uncertain)} uncertain, busy {busy_at_kills}")


def test_sigkill_three_times_loses_nothing_and_never_replies_twice(
    tmp_path: Path, fakes: tuple[FakeTelegram, SlowModel], seed: int
) -> None:
    _run(tmp_path, fakes, seed, signal.SIGKILL)


def test_sigterm_three_times_answers_every_message_exactly_once(
    tmp_path: Path, fakes: tuple[FakeTelegram, SlowModel], seed: int
) -> None:
    _run(tmp_path, fakes, seed, signal.SIGTERM)
