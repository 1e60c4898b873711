"""A connector is started again after every path that reloads its instance.

Each test runs a real `grambot run` with the real telegram built-in (python-telegram-bot) on the
fake Telegram Bot API, the offline `echo` model answering, and checks the user-visible outcome:
after the path, a message sent to the bot is answered (so polling resumed), with the new token
after a rotation. Paths: a settings edit, `grambot secrets set`, `--reload-plugins`, a retry
that succeeds, disable then enable. The scaffolded connector no longer starts itself in load.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.fakes.base import fake_fixture
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import entry, eventually
from tests.runproc import cli, running, workspace_with

TOKEN = "123456:AAH-first-token-for-lifecycle"
TOKEN2 = "654321:BBH-rotated-token-for-lifecycle"
OWNER = 111
BUILTIN = Path(__file__).resolve().parent.parent / "builtin_plugins"


fake = fake_fixture(lambda: FakeTelegram({TOKEN: "fake_bot", TOKEN2: "rotated_bot"}))


def _telegram(fake: FakeTelegram, plugin_id: str = "telegram", **extra: Any) -> dict[str, Any]:
    settings = fake.plugin_settings(
        OWNER, requestTimeout=3.0, backoffInitial=0.05, backoffMax=0.2, maxRetries=1, **extra
    )
    return entry("tg", plugin_id, **settings)


def _workspace(root: Path, fake: FakeTelegram, **engine_keys: Any) -> Path:
    plugin_id = engine_keys.pop("plugin_id", "telegram")
    ws = workspace_with(
        root,
        [_telegram(fake, plugin_id), entry("echo", "echo")],
        agent={"inference": "echo"},
        **engine_keys,
    )
    secrets = ws / ".scout" / "secrets.json"
    secrets.write_text(json.dumps({"tg": {"botToken": TOKEN}}))
    secrets.chmod(0o600)
    return ws


def _answered(fake: FakeTelegram, token: str, text: str) -> None:
    """Send `text` to the bot and wait until the echo answer comes back through Telegram."""
    fake.push_message(token, text, user_id=OWNER)
    eventually(
        lambda: any(s.get("text") == text for s in fake.sent(token, "sendMessage")),
        timeout=15,
        what=f"an answer to {text!r}",
    )


def _grambot(ws: Path, *args: str, stdin: str = "") -> None:
    done = cli(ws, *args, stdin=stdin)
    assert done.returncode == 0, done.stderr


def test_polling_resumes_after_a_settings_edit(tmp_path: Path, fake: FakeTelegram) -> None:
    ws = _workspace(tmp_path, fake)
    with running(ws) as engine:
        _answered(fake, TOKEN, "before the edit")
        _grambot(ws, "enable", "telegram", "--instance", "tg", "--set", "requestTimeout=4")
        engine.wait_for_log("telegram bot @fake_bot ready", count=2)
        _answered(fake, TOKEN, "after the edit")


def test_polling_resumes_with_the_new_token_after_secrets_set(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    ws = _workspace(tmp_path, fake)
    with running(ws) as engine:
        _answered(fake, TOKEN, "with the first token")
        _grambot(ws, "secrets", "set", "tg", "botToken", stdin=TOKEN2 + "\n")
        engine.wait_for_log("telegram bot @rotated_bot ready")
        _answered(fake, TOKEN2, "with the rotated token")
    assert TOKEN2 not in engine.output and TOKEN not in engine.output


def test_polling_resumes_after_reload_plugins(tmp_path: Path, fake: FakeTelegram) -> None:
    plugins = tmp_path / "dev-plugins"
    copy = plugins / "tgdev"
    shutil.copytree(BUILTIN / "telegram", copy, ignore=shutil.ignore_patterns("__pycache__"))
    descriptor = json.loads((copy / "plugin.json").read_text())
    (copy / "plugin.json").write_text(json.dumps({**descriptor, "id": "tgdev"}))
    ws = _workspace(tmp_path / "ws", fake, plugin_id="tgdev")
    settings_file = ws / ".scout" / "settings.json"
    data = json.loads(settings_file.read_text())
    data["pluginDirs"].append(str(plugins))
    settings_file.write_text(json.dumps(data))
    with running(ws, "--reload-plugins") as engine:
        _answered(fake, TOKEN, "before the code change")
        text = copy / "text.py"
        text.write_text(text.read_text() + "\n# edited\n")
        engine.wait_for_log("plugin tgdev changed: reloading tg")
        engine.wait_for_log("telegram bot @fake_bot ready", count=2)
        _answered(fake, TOKEN, "after the code change")


def test_polling_starts_when_a_retry_succeeds(tmp_path: Path, fake: FakeTelegram) -> None:
    fake.fail(502, times=2, path_contains="getMe")
    ws = _workspace(tmp_path, fake, retry={"initialDelay": 0.2, "maxDelay": 0.5})
    with running(ws) as engine:
        engine.wait_for_log("instance tg (plugin telegram) loaded after")
        _answered(fake, TOKEN, "after the retry")


def test_polling_resumes_after_disable_then_enable(tmp_path: Path, fake: FakeTelegram) -> None:
    ws = _workspace(tmp_path, fake)
    with running(ws) as engine:
        _grambot(ws, "disable", "tg")
        engine.wait_for_log("instance tg (plugin telegram) unloaded")
        _grambot(ws, "enable", "telegram", "--instance", "tg", "--no-input")
        engine.wait_for_log("telegram bot @fake_bot ready", count=2)
        _answered(fake, TOKEN, "after enable")


def test_the_scaffolded_connector_is_started_once_by_the_engine(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / ".scout").mkdir(parents=True)
    (ws / ".scout" / "settings.json").write_text(json.dumps({"plugins": []}))
    _grambot(ws, "new", "mychat", "--kind", "connector")
    source = (ws / "plugins" / "mychat" / "plugin.py").read_text()
    load = source[source.index("async def load") :].split("\n\n")[0]
    assert ".start()" not in load, load
    test_file = next((ws / "plugins" / "mychat").glob("test_*.py"))
    assert "engine.manager" not in test_file.read_text()
    settings = {"plugins": [entry("mychat", "mychat")]}
    (ws / ".scout" / "settings.json").write_text(json.dumps(settings))
    with running(ws) as engine:
        assert engine.output.count("connector started") == 1, engine.output
