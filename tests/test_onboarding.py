"""`grambot enable` on a terminal runs the plugin's onboarding hook (a real pseudo-terminal)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.runproc import workspace_with
from tests.terminal import Terminal


def test_enable_on_a_terminal_runs_onboarding_and_stores_the_secret(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [])
    term = Terminal("enable", "onboarded", "--instance", "ob", "-w", str(ws))
    term.answer("Bot token: ", "tok-hidden-42")
    term.answer("Chat id:", "12345")
    code = term.finish()
    assert code == 0, term.text
    assert "tok-hidden-42" not in term.text  # typed without echo
    assert "stored secrets: token" in term.text
    data = json.loads((ws / ".scout" / "settings.json").read_text())
    assert data["plugins"] == [
        {
            "instanceId": "ob",
            "pluginId": "onboarded",
            "enabled": True,
            "settings": {"chat": "12345"},
        }
    ]
    secrets = json.loads((ws / ".scout" / "secrets.json").read_text())
    assert secrets == {"ob": {"token": "tok-hidden-42"}}


def test_onboarding_does_not_ask_for_a_secret_the_environment_provides(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [])
    term = Terminal(
        "enable",
        "onboarded",
        "--instance",
        "ob",
        "-w",
        str(ws),
        env={"GRAMBOT_SECRET__ob__token": "tok-from-env-77"},
    )
    term.expect("token: set by GRAMBOT_SECRET__ob__token; not asked")
    term.answer("Chat id:", "12345")
    code = term.finish()
    assert code == 0, term.text
    assert "tok-from-env-77" not in term.text
    assert not (ws / ".scout" / "secrets.json").exists()  # never copied into the store
    data = json.loads((ws / ".scout" / "settings.json").read_text())
    assert data["plugins"][0]["settings"] == {"chat": "12345"}


def test_set_values_win_over_onboarding_answers(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [])
    term = Terminal("enable", "onboarded", "--set", "chat=777", "-w", str(ws))
    term.answer("Bot token: ", "tok-abcdef")
    term.answer("Chat id [777]:", "")
    assert term.finish() == 0, term.text
    data = json.loads((ws / ".scout" / "settings.json").read_text())
    assert data["plugins"][0]["settings"] == {"chat": "777"}


def test_failed_onboarding_writes_nothing_and_masks_the_secret(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [])
    term = Terminal("enable", "onboarded", "-w", str(ws))
    term.answer("Bot token: ", "abc")
    assert term.finish() == 1, term.text
    assert "onboarding of plugin 'onboarded' failed: ValueError: that token is too short" in (
        term.text
    )
    assert "nothing was written" in term.text
    assert json.loads((ws / ".scout" / "settings.json").read_text())["plugins"] == []
    assert not (ws / ".scout" / "secrets.json").exists()


def test_no_input_never_prompts(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [])
    term = Terminal("enable", "onboarded", "--no-input", "-w", str(ws))
    code = term.finish()
    assert code == 1, term.text
    assert "Bot token" not in term.text
    assert "plugins[0].settings.chat: Field required" in term.text
    assert not (ws / ".scout" / "secrets.json").exists()
