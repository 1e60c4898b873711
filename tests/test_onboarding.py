"""`grambot enable` on a terminal runs the plugin's onboarding hook (a real pseudo-terminal)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from tests.runproc import workspace_with


class Terminal:
    """`grambot ARGS` with a pseudo-terminal as stdin/stdout/stderr."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "grambot", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            env={**os.environ, "TERM": "dumb", **(env or {})},
        )
        os.close(slave)
        self.seen = ""

    def expect(self, text: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{text!r} not shown; got {self.seen!r}"
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk:
                    assert text in self.seen, f"{text!r} not shown; got {self.seen!r}"
                self.seen += chunk.decode(errors="replace")

    # A hidden prompt is typed into only once its last character is shown: click before 8.4
    # writes "Bot token:" itself, then getpass turns the echo off, discarding what was typed
    # already (TCSAFLUSH), and only then writes the final " ".

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def answer(self, prompt: str, line: str) -> None:
        """Wait for `prompt`, then type `line` and Enter."""
        self.expect(prompt)
        self.send(line)

    def finish(self) -> int:
        code = self.proc.wait(15)
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.seen += chunk.decode(errors="replace")
        os.close(self.master)
        return code


def test_enable_on_a_terminal_runs_onboarding_and_stores_the_secret(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [])
    term = Terminal("enable", "onboarded", "--instance", "ob", "-w", str(ws))
    term.answer("Bot token: ", "tok-hidden-42")
    term.answer("Chat id:", "12345")
    code = term.finish()
    assert code == 0, term.seen
    assert "tok-hidden-42" not in term.seen  # typed without echo
    assert "stored secrets: token" in term.seen
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
    assert code == 0, term.seen
    assert "tok-from-env-77" not in term.seen
    assert not (ws / ".scout" / "secrets.json").exists()  # never copied into the store
    data = json.loads((ws / ".scout" / "settings.json").read_text())
    assert data["plugins"][0]["settings"] == {"chat": "12345"}


def test_set_values_win_over_onboarding_answers(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [])
    term = Terminal("enable", "onboarded", "--set", "chat=777", "-w", str(ws))
    term.answer("Bot token: ", "tok-abcdef")
    term.answer("Chat id [777]:", "")
    assert term.finish() == 0, term.seen
    data = json.loads((ws / ".scout" / "settings.json").read_text())
    assert data["plugins"][0]["settings"] == {"chat": "777"}


def test_failed_onboarding_writes_nothing_and_masks_the_secret(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [])
    term = Terminal("enable", "onboarded", "-w", str(ws))
    term.answer("Bot token: ", "abc")
    assert term.finish() == 1, term.seen
    assert "onboarding of plugin 'onboarded' failed: ValueError: that token is too short" in (
        term.seen
    )
    assert "nothing was written" in term.seen
    assert json.loads((ws / ".scout" / "settings.json").read_text())["plugins"] == []
    assert not (ws / ".scout" / "secrets.json").exists()


def test_no_input_never_prompts(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [])
    term = Terminal("enable", "onboarded", "--no-input", "-w", str(ws))
    code = term.finish()
    assert code == 1, term.seen
    assert "Bot token" not in term.seen
    assert "plugins[0].settings.chat: Field required" in term.seen
    assert not (ws / ".scout" / "secrets.json").exists()
