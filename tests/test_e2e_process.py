"""End to end through the real `grambot run` process and the real SDKs against local fakes:
a Telegram user asks; the model calls `web_search`; Brave answers; the model's final text quotes
a result; the reply reaches the same Telegram chat. Once with Claude, once with openai-codex."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from grambot.secrets.store import FileSecretsStore
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.brave_api import FakeBrave
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import eventually

TOKEN = "4242:process-e2e-token"
OWNER = 5150


@pytest.fixture
def servers() -> Iterator[dict[str, Any]]:
    fakes: dict[str, Any] = {
        "telegram": FakeTelegram(),
        "anthropic": FakeAnthropic("ant-e2e-key"),
        "openai": FakeOpenAI("oai-e2e-key"),
        "brave": FakeBrave("brave-e2e-key"),
    }
    fakes["telegram"].add_bot(TOKEN)
    for fake in fakes.values():
        fake.start()
    try:
        yield fakes
    finally:
        for fake in fakes.values():
            fake.stop()


def _wait(check: Callable[[], Any], timeout: float, proc: subprocess.Popen[str]) -> Any:
    """`eventually`, failing at once when `grambot run` has exited."""

    def running_and() -> Any:
        value = check()
        assert value or proc.poll() is None, "grambot run exited early"
        return value

    return eventually(running_and, timeout, 0.05)


@pytest.mark.parametrize("provider", ["anthropic", "openai-codex"])
def test_telegram_question_answered_with_a_web_search(
    tmp_path: Path, servers: dict[str, Any], provider: str
) -> None:
    telegram, brave = servers["telegram"], servers["brave"]
    if provider == "anthropic":
        model_api = servers["anthropic"]
        model_api.reply_tool_use("web_search", {"query": "grambot engine", "count": 1})
        provider_settings = {"baseUrl": model_api.url, "maxRetries": 0}
    else:
        model_api = servers["openai"]
        model_api.reply_tool_call("web_search", {"query": "grambot engine", "count": 1})
        provider_settings = {"baseUrl": f"{model_api.url}/v1", "maxRetries": 0}

    scout = tmp_path / ".scout"
    scout.mkdir()
    secrets = FileSecretsStore(scout / "secrets.json")
    secrets.set("tg", "botToken", TOKEN)
    secrets.set("brain", "apiKey", model_api.api_key)
    secrets.set("search", "apiKey", brave.token)
    settings = {
        "agent": {"inference": "brain"},
        "plugins": [
            {
                "instanceId": "tg",
                "pluginId": "telegram",
                "enabled": True,
                "settings": {
                    "baseUrl": telegram.base_url,
                    "baseFileUrl": telegram.base_file_url,
                    "allowedUserIds": [OWNER],
                    "pollTimeout": 1,
                },
            },
            {
                "instanceId": "brain",
                "pluginId": provider,
                "enabled": True,
                "settings": provider_settings,
            },
            {
                "instanceId": "search",
                "pluginId": "brave-search",
                "enabled": True,
                "settings": {"baseUrl": brave.url, "maxRetries": 0},
            },
        ],
    }
    (scout / "settings.json").write_text(json.dumps(settings, indent=2))
    env = {
        **os.environ,
        "ANTHROPIC_API_KEY": "poison",
        "OPENAI_API_KEY": "poison",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
        "OPENAI_BASE_URL": "http://127.0.0.1:9",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "grambot", "run", "--workspace", str(tmp_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        status = scout / "status.json"

        def all_loaded() -> bool:
            try:
                data = json.loads(status.read_text())
            except (OSError, ValueError):
                return False
            states = {i["instanceId"]: i["state"] for i in data["instances"]}
            return states == {"tg": "loaded", "brain": "loaded", "search": "loaded"}

        _wait(all_loaded, 30, proc)
        telegram.push_message(TOKEN, "what is grambot?", user_id=OWNER)
        sent = _wait(lambda: telegram.sent(TOKEN, "sendMessage"), 30, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    (reply,) = sent
    assert str(reply["chat_id"]) == str(OWNER)
    assert brave.requests[-1].query["q"] == "grambot engine"
    # The model's final text (the fake echoes the tool result) quotes Brave's first result.
    assert "tool result Web results for 'grambot engine':" in reply["text"]
    assert "poison" not in output and model_api.api_key not in output and TOKEN not in output
