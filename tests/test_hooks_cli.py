"""The lifecycle hooks from the command line: `grambot check`, `enable --check`,
`secrets set --check`, and in-place reconfiguration seen from the Telegram side (the long
poll is never dropped by an allowlist edit)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.fakes.base import fake_fixture
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import entry, eventually
from tests.runproc import cli, running, workspace_with

TOKEN = "123456:AAH-token-for-the-hooks-tests"
OTHER = "654321:BBH-another-good-token-here"
BAD = "999999:not-a-token-telegram-knows"
OWNER, FRIEND = 111, 222


fake = fake_fixture(lambda: FakeTelegram({TOKEN: "fake_bot", OTHER: "other_bot"}))


def _settings(fake: FakeTelegram, **extra: Any) -> dict[str, Any]:
    return fake.plugin_settings(OWNER, maxRetries=0, **extra)


def _ws(root: Path, fake: FakeTelegram, token: str = TOKEN, **extra: Any) -> Path:
    ws = workspace_with(
        root,
        [entry("tg", "telegram", **_settings(fake, **extra)), entry("echo", "echo")],
        agent={"inference": "echo"},
    )
    secrets = ws / ".scout" / "secrets.json"
    secrets.write_text(json.dumps({"tg": {"botToken": token}}))
    secrets.chmod(0o600)
    return ws


def _grambot(ws: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return cli(ws, *args, stdin=stdin, timeout=60)


def test_grambot_check_prints_ok_or_the_typed_reason(tmp_path: Path, fake: FakeTelegram) -> None:
    ws = _ws(tmp_path / "good", fake)
    ok = _grambot(ws, "check", "tg")
    assert ok.returncode == 0 and "ok" in ok.stdout and "fake_bot" in ok.stdout, ok.stderr
    bad = _grambot(_ws(tmp_path / "bad", fake, token=BAD), "check", "tg")
    assert bad.returncode == 1 and "auth" in bad.stdout + bad.stderr, bad.stdout + bad.stderr
    assert BAD not in bad.stdout + bad.stderr
    unknown = _grambot(ws, "check", "nobody")
    assert unknown.returncode == 1 and "nobody" in unknown.stderr


def test_secrets_set_check_saves_only_a_value_that_passes(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    ws = _ws(tmp_path, fake)
    secrets = ws / ".scout" / "secrets.json"
    refused = _grambot(ws, "secrets", "set", "tg", "botToken", "--check", stdin=BAD + "\n")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "auth" in refused.stderr and "not saved" in refused.stderr
    assert json.loads(secrets.read_text())["tg"]["botToken"] == TOKEN
    saved = _grambot(ws, "secrets", "set", "tg", "botToken", "--check", stdin=OTHER + "\n")
    assert saved.returncode == 0, saved.stderr
    assert json.loads(secrets.read_text())["tg"]["botToken"] == OTHER


def test_enable_check_writes_only_an_entry_that_passes(tmp_path: Path, fake: FakeTelegram) -> None:
    ws = workspace_with(tmp_path, [])
    (ws / ".scout" / "secrets.json").write_text(json.dumps({"tg": {"botToken": BAD}}))
    (ws / ".scout" / "secrets.json").chmod(0o600)
    sets = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in _settings(fake).items()]
    args = ["enable", "telegram", "--instance", "tg", "--no-input", "--check"]
    for item in sets:
        args += ["--set", item]
    refused = _grambot(ws, *args)
    assert refused.returncode == 1 and "auth" in refused.stderr, refused.stderr
    assert json.loads((ws / ".scout" / "settings.json").read_text())["plugins"] == []
    (ws / ".scout" / "secrets.json").write_text(json.dumps({"tg": {"botToken": TOKEN}}))
    written = _grambot(ws, *args)
    assert written.returncode == 0, written.stderr
    plugins = json.loads((ws / ".scout" / "settings.json").read_text())["plugins"]
    assert [p["instanceId"] for p in plugins] == ["tg"]


def test_an_allowlist_edit_applies_in_place_without_dropping_the_long_poll(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    ws = _ws(tmp_path, fake, pollTimeout=2)
    with running(ws) as engine:
        fake.push_message(TOKEN, "from the owner", user_id=OWNER)
        eventually(lambda: any(s.get("text") == "from the owner" for s in fake.sent(TOKEN)))
        get_me = fake.paths().count(f"/bot{TOKEN}/getMe")
        done = _grambot(
            ws,
            "enable",
            "telegram",
            "--instance",
            "tg",
            "--set",
            f"allowedUserIds=[{OWNER},{FRIEND}]",
        )
        assert done.returncode == 0, done.stderr
        engine.wait_for_log("reconfigured in place")
        fake.push_message(TOKEN, "from the friend", user_id=FRIEND)  # the new allowlist applies
        eventually(lambda: any(s.get("text") == "from the friend" for s in fake.sent(TOKEN)))
        status = engine.status() or {}
        (tg,) = [i for i in status["instances"] if i["instanceId"] == "tg"]
        assert tg["state"] == "loaded"
    # never reloaded: one getMe (the load), and no "unloaded" in between
    assert fake.paths().count(f"/bot{TOKEN}/getMe") == get_me
    assert "instance tg (plugin telegram) unloaded" not in engine.output.split("reconfigured")[0]
    assert engine.output.count("polling (resuming after update") == 1  # started once, never again
