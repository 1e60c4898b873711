"""The telegram built-in, driven through the engine against a fake Bot API (real
python-telegram-bot on the wire)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from grambot import CONNECTOR_MESSAGE, Attachment, Connector, IncomingMessage, ServiceError
from tests.builtin.conftest import Harness, closed_port_url, load_plugin_module
from tests.fakes.telegram_api import PNG_1PX, FakeTelegram
from tests.helpers import eventually_async, status_of

TOKEN = "123456:AAH-secret-token-for-tests"
TOKEN2 = "654321:BBH-other-secret-token"
OWNER = 111
STRANGER = 999


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    server = FakeTelegram()
    server.add_bot(TOKEN)
    server.add_bot(TOKEN2, username="second_bot")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def settings(fake: FakeTelegram, **extra: Any) -> dict[str, Any]:
    base = {"requestTimeout": 2.0, "backoffInitial": 0.05, "backoffMax": 0.2, "maxRetries": 2}
    return fake.plugin_settings(OWNER, **{**base, **extra})


async def load(
    h: Harness,
    fake: FakeTelegram,
    instance: str = "tg",
    token: str = TOKEN,
    *,
    start: bool = True,
    **extra: Any,
) -> Connector:
    await h.load(instance, "telegram", secrets={"botToken": token}, **settings(fake, **extra))
    assert h.loaded(instance), h.failure(instance)
    connector = h.engine.registries.connectors.get(instance)
    assert connector is not None
    if start:
        await connector.start()  # what the engine does once a reconcile has loaded everything
    return connector


def messages(h: Harness, instance: str | None = None) -> list[IncomingMessage]:
    """What the connector put into the engine's durable inbox (api.inbox), oldest first."""
    return [
        e.message
        for e in h.engine.storage.inbox_entries()
        if instance is None or e.message.connector_id == instance
    ]


def state_file(h: Harness, instance: str = "tg") -> Path:
    return h.workspace.data_dir(instance) / "telegram-state.json"


def assert_clean(exc: ServiceError, *tokens: str) -> None:
    text = str(exc)
    for token in (*tokens, TOKEN, TOKEN2, TOKEN.split(":")[1]):
        assert token not in text, text


# -- receiving -------------------------------------------------------------------------------


async def test_an_update_arrives_in_the_inbox(harness: Harness, fake: FakeTelegram) -> None:
    await load(harness, fake)
    assert fake.bots[TOKEN].deleted_webhook == 1  # clearWebhook defaults to on

    uid = fake.push_message(TOKEN, "hi there", user_id=OWNER)
    (msg,) = await eventually_async(lambda: messages(harness), timeout=5)
    assert harness.of_type(CONNECTOR_MESSAGE) == []  # the inbox, not an event (at most once)
    assert msg.connector_id == "tg"
    assert msg.chat_id == str(OWNER) and msg.sender == str(OWNER)
    assert msg.text == "hi there" and msg.message_id
    assert msg.extra["senderName"] == "Ada" and msg.extra["updateId"] == uid
    await eventually_async(lambda: state_file(harness).exists(), timeout=5)
    assert json.loads(state_file(harness).read_text()) == {"botId": 123456, "lastUpdateId": uid}


async def test_stop_and_start_pause_and_resume_polling(
    harness: Harness, fake: FakeTelegram
) -> None:
    connector = await load(harness, fake)
    await connector.stop()
    await connector.stop()  # idempotent
    polls = len(fake.bots[TOKEN].offsets)
    fake.push_message(TOKEN, "while stopped", user_id=OWNER)
    await asyncio.sleep(0.2)
    assert len(fake.bots[TOKEN].offsets) == polls and messages(harness) == []
    await connector.start()
    await connector.start()  # idempotent: one poller
    (msg,) = await eventually_async(lambda: messages(harness), timeout=5)
    assert msg.text == "while stopped"
    await asyncio.sleep(0.2)
    assert len(messages(harness)) == 1


async def test_clear_webhook_can_be_turned_off(harness: Harness, fake: FakeTelegram) -> None:
    await load(harness, fake, clearWebhook=False)
    assert fake.bots[TOKEN].deleted_webhook == 0
    assert "site-packages" in str(sys.modules["telegram"].__file__)  # the SDK, not our folder


async def test_messages_from_strangers_are_ignored_and_logged(
    harness: Harness, fake: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="grambot.plugin.tg")
    await load(harness, fake, allowedChatIds=[-500])
    fake.push_message(TOKEN, "let me in", user_id=STRANGER)
    fake.push_message(TOKEN, "group chat", user_id=STRANGER, chat_id=-500)
    last = fake.push_message(TOKEN, "owner", user_id=OWNER)
    await eventually_async(lambda: len(messages(harness)) == 2, timeout=5)
    assert [m.text for m in messages(harness)] == ["group chat", "owner"]
    ignored = [r.getMessage() for r in caplog.records if "ignored a message" in r.getMessage()]
    assert len(ignored) == 1 and str(STRANGER) in ignored[0]
    # an ignored update is handled too: the position moved past all three
    # (the file appears once the batch is in the inbox: a missing one is not a failure yet)
    await eventually_async(
        lambda: (
            state_file(harness).exists()
            and json.loads(state_file(harness).read_text())["lastUpdateId"] == last
        ),
        timeout=5,
    )


async def test_with_empty_allow_lists_nothing_is_delivered(
    harness: Harness, fake: FakeTelegram
) -> None:
    await load(harness, fake, allowedUserIds=[])
    uid = fake.push_message(TOKEN, "anyone?", user_id=OWNER)
    await eventually_async(lambda: state_file(harness).exists(), timeout=5)
    assert json.loads(state_file(harness).read_text())["lastUpdateId"] == uid
    assert messages(harness) == []


async def test_an_incoming_photo_is_saved_as_an_attachment(
    harness: Harness, fake: FakeTelegram
) -> None:
    await load(harness, fake)
    fake.push_message(TOKEN, None, user_id=OWNER, photo=PNG_1PX, caption="look")
    (msg,) = await eventually_async(lambda: messages(harness), timeout=5)
    assert msg.text == "look"
    (attachment,) = msg.attachments
    assert attachment.mime_type == "image/png"
    assert attachment.path.read_bytes() == PNG_1PX
    assert attachment.path.parent == harness.workspace.data_dir("tg") / "files"


async def test_a_restart_resumes_from_the_stored_offset(
    harness: Harness, fake: FakeTelegram
) -> None:
    await load(harness, fake)
    first = fake.push_message(TOKEN, "one", user_id=OWNER)
    second = fake.push_message(TOKEN, "two", user_id=OWNER)
    await eventually_async(lambda: len(messages(harness)) == 2, timeout=5)
    await eventually_async(
        lambda: json.loads(state_file(harness).read_text())["lastUpdateId"] == second, timeout=5
    )
    # the next long poll has reached the fake (so it is not confused with the next instance's)
    await eventually_async(lambda: fake.bots[TOKEN].offsets[-1] == second + 1, timeout=5)
    await harness.remove("tg")
    assert "tg" not in harness.engine.registries.connectors

    fake.ignore_offset = True  # the server re-sends what it had: the connector must drop it
    fake.bots[TOKEN].pending.extend(
        [
            {
                "update_id": first,
                "message": {
                    "message_id": 1,
                    "date": 0,
                    "chat": {"id": OWNER, "type": "private"},
                    "from": {"id": OWNER, "is_bot": False, "first_name": "Ada"},
                    "text": "one",
                },
            }
        ]
    )
    third = fake.push_message(TOKEN, "three", user_id=OWNER)
    polls_before = len(fake.bots[TOKEN].offsets)
    await load(harness, fake)
    await eventually_async(lambda: len(messages(harness)) == 3, timeout=5)
    assert [m.text for m in messages(harness)] == ["one", "two", "three"]
    assert fake.bots[TOKEN].offsets[polls_before] == second + 1  # resumed after the last one
    await eventually_async(
        lambda: json.loads(state_file(harness).read_text())["lastUpdateId"] == third, timeout=5
    )


async def test_polling_recovers_from_server_errors_and_flood_control(
    harness: Harness, fake: FakeTelegram
) -> None:
    await load(harness, fake)
    fake.fail(500, times=2, path_contains="getUpdates")
    fake.fail(429, headers={"retry_after": "1"}, path_contains="getUpdates")
    fake.push_message(TOKEN, "still here", user_id=OWNER)
    (msg,) = await eventually_async(lambda: messages(harness), timeout=8)
    assert msg.text == "still here"
    assert harness.loaded("tg")


async def test_unload_stops_a_long_poll_within_its_deadline(
    harness: Harness, fake: FakeTelegram
) -> None:
    fake.max_long_poll = 30
    await load(harness, fake, pollTimeout=30)
    await eventually_async(lambda: fake.bots[TOKEN].offsets, timeout=5)  # a long poll is in flight
    started = time.monotonic()
    await harness.remove("tg")
    assert time.monotonic() - started < 2.0
    polls = len(fake.bots[TOKEN].offsets)
    fake.push_message(TOKEN, "nobody listens", user_id=OWNER)
    await asyncio.sleep(0.2)
    assert len(fake.bots[TOKEN].offsets) == polls and messages(harness) == []


async def test_two_instances_with_two_tokens_run_side_by_side(
    harness: Harness, fake: FakeTelegram
) -> None:
    one = await load(harness, fake, "tg1", TOKEN)
    two = await load(harness, fake, "tg2", TOKEN2)
    assert harness.loaded("tg1") and harness.loaded("tg2")
    fake.push_message(TOKEN, "to one", user_id=OWNER)
    fake.push_message(TOKEN2, "to two", user_id=OWNER)
    await eventually_async(lambda: len(messages(harness)) == 2, timeout=5)
    assert [m.text for m in messages(harness, "tg1")] == ["to one"]
    assert [m.text for m in messages(harness, "tg2")] == ["to two"]
    await one.send_message(str(OWNER), "from one")
    await two.send_message(str(OWNER), "from two")
    assert [s["text"] for s in fake.sent(TOKEN)] == ["from one"]
    assert [s["text"] for s in fake.sent(TOKEN2)] == ["from two"]
    assert state_file(harness, "tg1") != state_file(harness, "tg2")


# -- sending ---------------------------------------------------------------------------------


async def test_a_reply_goes_out_through_send_message(harness: Harness, fake: FakeTelegram) -> None:
    connector = await load(harness, fake)
    await connector.send_message(str(OWNER), "pong", reply_to="7")
    (sent,) = fake.sent(TOKEN, "sendMessage")
    assert sent["text"] == "pong" and str(sent["chat_id"]) == str(OWNER)
    assert json.loads(sent["reply_parameters"])["message_id"] == 7
    await connector.send_message(str(OWNER), "no reply", reply_to="console-3")
    assert "reply_parameters" not in fake.sent(TOKEN, "sendMessage")[-1]


async def test_long_messages_are_split_at_4096(harness: Harness, fake: FakeTelegram) -> None:
    connector = await load(harness, fake)
    text = ("word " * 1000) + "\n\n" + ("x" * 4200)
    await connector.send_message(str(OWNER), text)
    chunks = [s["text"] for s in fake.sent(TOKEN, "sendMessage")]
    assert len(chunks) == 3
    assert all(0 < len(c) <= 4096 for c in chunks)
    assert "".join(chunks).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace(
        "\n", ""
    )


async def test_a_photo_goes_out_with_its_caption(
    harness: Harness, fake: FakeTelegram, tmp_path: Path
) -> None:
    connector = await load(harness, fake)
    picture = tmp_path / "cat.png"
    picture.write_bytes(PNG_1PX)
    document = tmp_path / "notes.txt"
    document.write_text("notes")
    await connector.send_message(str(OWNER), "a cat", files=[Attachment(picture, "image/png")])
    (photo,) = fake.sent(TOKEN, "sendPhoto")
    assert photo["photo"] == PNG_1PX and photo["caption"] == "a cat"
    assert fake.sent(TOKEN, "sendMessage") == []
    await connector.send_message(
        str(OWNER),
        "two files",
        files=[Attachment(picture, "image/png"), Attachment(document, "text/plain")],
    )
    assert [s["method"] for s in fake.sent(TOKEN)][1:] == [
        "sendMessage",
        "sendPhoto",
        "sendDocument",
    ]


async def test_flood_control_is_waited_out(harness: Harness, fake: FakeTelegram) -> None:
    connector = await load(harness, fake)
    fake.fail(429, headers={"retry_after": "1"}, path_contains="sendMessage")
    started = time.monotonic()
    await connector.send_message(str(OWNER), "patience")
    assert time.monotonic() - started >= 0.9
    assert [s["text"] for s in fake.sent(TOKEN, "sendMessage")] == ["patience"]


@pytest.mark.parametrize(
    ("script", "kind"),
    [
        ({"status": 401}, "auth"),
        ({"status": 403}, "auth"),
        ({"status": 400}, "bad-request"),
        ({"status": 429, "headers": {"retry_after": "120"}}, "rate-limit"),
        ({"status": 500, "times": 3}, "server"),
        ({"hang": 3.0}, "timeout"),
        ({"malformed": True}, "bad-response"),
    ],
)
async def test_send_failures_are_clear_and_leave_the_instance_loaded(
    harness: Harness, fake: FakeTelegram, script: dict[str, Any], kind: str
) -> None:
    connector = await load(harness, fake, requestTimeout=0.3)
    fake.play(
        script, secret_message=f"Unauthorized: {TOKEN}", hang_times=3, path_contains="sendMessage"
    )
    started = time.monotonic()
    with pytest.raises(ServiceError) as caught:
        await connector.send_message(str(OWNER), "hello?")
    assert time.monotonic() - started < 5
    error = caught.value
    assert error.kind == kind and error.instance_id == "tg" and error.service == "telegram"
    assert "sendMessage" in str(error)
    assert_clean(error)
    assert harness.loaded("tg") and harness.engine.event_engine.running
    fake.push_message(TOKEN, "after", user_id=OWNER)  # polling carries on
    await eventually_async(lambda: messages(harness), timeout=5)
    await connector.send_message(str(OWNER), "recovered")
    assert fake.sent(TOKEN, "sendMessage")[-1]["text"] == "recovered"


# -- loading ---------------------------------------------------------------------------------


async def test_a_rejected_token_fails_the_load_clearly(
    harness: Harness, fake: FakeTelegram
) -> None:
    bad = "999:not-a-known-token"
    await harness.load("tg", "telegram", secrets={"botToken": bad}, **settings(fake))
    assert not harness.loaded("tg")
    message = harness.failure("tg")
    assert "401" in message or "Unauthorized" in message
    assert "grambot secrets set tg botToken" in message
    assert bad not in message and "not-a-known-token" not in message
    assert "tg" not in harness.engine.registries.connectors


async def test_a_missing_token_names_the_command_to_set_it(
    harness: Harness, fake: FakeTelegram
) -> None:
    await harness.load("tg", "telegram", **settings(fake))
    assert "grambot secrets set tg botToken" in harness.failure("tg")


async def test_the_token_never_reaches_the_logs(
    harness: Harness, fake: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    connector = await load(harness, fake)
    fake.push_message(TOKEN, "hi", user_id=OWNER)
    await eventually_async(lambda: messages(harness), timeout=5)
    await connector.send_message(str(OWNER), "hello")
    await harness.remove("tg")
    assert any("getUpdates" in r.getMessage() for r in caplog.records)  # httpx logged the URLs
    for record in caplog.records:
        assert TOKEN.split(":")[1] not in record.getMessage(), record.getMessage()


def test_split_text_respects_utf16_and_breaks() -> None:
    text_module = load_plugin_module("telegram", "text")
    split = text_module.split_text
    assert split("") == [""]
    assert split("short") == ["short"]
    emoji = "\U0001f600" * 3000  # 6000 UTF-16 units
    chunks = split(emoji)
    assert all(text_module.utf16_len(c) <= 4096 for c in chunks) and "".join(chunks) == emoji
    lines = "\n".join(f"line {i}" for i in range(1000))
    chunks = split(lines, 100)
    assert all(len(c) <= 100 for c in chunks)
    assert all(not c.startswith("\n") and not c.endswith("\n") for c in chunks)
    assert "\n".join(chunks) == lines


async def test_an_unreachable_bot_api_fails_the_load_as_a_network_error(
    harness: Harness,
) -> None:
    url = closed_port_url()
    await harness.load(
        "tg",
        "telegram",
        secrets={"botToken": TOKEN},
        baseUrl=f"{url}/bot",
        backoffInitial=0.05,
        maxRetries=1,
    )
    assert not harness.loaded("tg")
    message = harness.failure("tg")
    assert f"getMe: cannot reach {url}/bot" in message and "ConnectError" in message
    assert TOKEN not in message


# -- health ----------------------------------------------------------------------------------


def _health(h: Harness, instance: str = "tg") -> dict[str, Any]:
    return status_of(h.engine, instance, "health")


async def test_polling_and_sending_report_their_health(
    harness: Harness, fake: FakeTelegram
) -> None:
    connector = await load(harness, fake)
    await eventually_async(
        lambda: (_health(harness).get("lastOk") or {}).get("what") == "poll", timeout=5
    )
    assert _health(harness)["healthy"] is True
    fake.fail(502, times=1000, path_contains="getUpdates")  # Telegram goes away
    await eventually_async(lambda: _health(harness)["healthy"] is False, timeout=5)
    assert "getUpdates" in _health(harness)["lastError"]["message"]
    assert TOKEN not in json.dumps(_health(harness))
    fake._faults.clear()  # and comes back
    await eventually_async(lambda: _health(harness)["healthy"] is True, timeout=10)
    await connector.send_message(str(OWNER), "hello")
    assert _health(harness)["lastOk"]["what"] == "send"
