"""`grambot secrets` with the file and the keyring backend; reloads in a running engine."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from click.testing import CliRunner, Result
from keyring.backend import KeyringBackend

from grambot.cli import main
from grambot.secrets.backends import KeyringSecretsStore, default_service, open_store
from grambot.secrets.backends import SecretsConfig as Config
from tests.helpers import entry, eventually
from tests.keyring_backends import FILE_ENV, MemoryKeyring
from tests.runproc import EngineProcess, running, workspace_with

REPO = Path(__file__).resolve().parent.parent
TOKEN = "tok-3f9a-very-secret-value"


pytestmark = pytest.mark.usefixtures("keep_root_logging")


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous: KeyringBackend = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


def grambot(ws: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, [*args, "--workspace", str(ws)], input=input)


def _ws(root: Path, backend: str | None = None) -> Path:
    extra = {"secrets": {"backend": backend}} if backend else {}
    return workspace_with(root, [entry("bot", "marker")], **extra)


@pytest.mark.parametrize("backend", ["file", "keyring"])
def test_set_get_list_delete(tmp_path: Path, backend: str, memory_keyring: MemoryKeyring) -> None:
    ws = _ws(tmp_path, backend)
    result = grambot(ws, "secrets", "set", "bot", "token", input=TOKEN + "\n")
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output
    assert grambot(ws, "secrets", "set", "bot", "apiKey", input="k-123456").exit_code == 0
    assert grambot(ws, "secrets", "set", "other", "x", input="yyyy").exit_code == 0

    masked = grambot(ws, "secrets", "get", "bot", "token")
    assert masked.exit_code == 0 and TOKEN not in masked.output
    assert masked.output.strip() == f"********  ({len(TOKEN)} characters)"
    revealed = grambot(ws, "secrets", "get", "bot", "token", "--reveal")
    assert revealed.output == TOKEN + "\n"

    listed = grambot(ws, "secrets", "list", "bot").output.split()
    assert listed == ["apiKey", "store", "token", "store"]
    listing = grambot(ws, "secrets", "list").output
    assert "bot: apiKey (store), token (store)" in listing and "other: x (store)" in listing
    assert TOKEN not in listing

    assert grambot(ws, "secrets", "delete", "bot", "token").exit_code == 0
    missing = grambot(ws, "secrets", "get", "bot", "token")
    assert missing.exit_code == 1 and "has no secret 'token'" in missing.output
    assert grambot(ws, "secrets", "delete", "bot", "token").exit_code == 1
    assert grambot(ws, "secrets", "list", "bot").output.split() == ["apiKey", "store"]

    secrets_file = ws / ".scout" / "secrets.json"
    if backend == "file":
        assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
        assert json.loads(secrets_file.read_text()) == {
            "bot": {"apiKey": "k-123456"},
            "other": {"x": "yyyy"},
        }
    else:
        assert not secrets_file.exists()
        service = default_service(ws)
        assert memory_keyring.entries[(service, "bot/apiKey")] == "k-123456"
        assert (service, "bot/token") not in memory_keyring.entries


def test_values_never_come_from_argv(tmp_path: Path) -> None:
    ws = _ws(tmp_path)
    result = grambot(ws, "secrets", "set", "bot", "token", TOKEN)
    assert result.exit_code == 2  # usage error: no VALUE argument exists
    assert not (ws / ".scout" / "secrets.json").exists()
    empty = grambot(ws, "secrets", "set", "bot", "token", input="")
    assert empty.exit_code == 1 and "empty value" in empty.output
    bad = grambot(ws, "secrets", "set", "../x", "token", input="v")
    assert bad.exit_code == 1 and "must match" in bad.output


def test_keyring_service_is_per_workspace(tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    one = _ws(tmp_path / "one", "keyring")
    two = _ws(tmp_path / "two", "keyring")
    assert grambot(one, "secrets", "set", "bot", "token", input="first").exit_code == 0
    assert grambot(two, "secrets", "get", "bot", "token").exit_code == 1
    assert grambot(two, "secrets", "set", "bot", "token", input="second").exit_code == 0
    assert grambot(one, "secrets", "get", "bot", "token", "--reveal").output == "first\n"
    assert grambot(two, "secrets", "get", "bot", "token", "--reveal").output == "second\n"
    store = open_store(one, Config(backend="keyring", service="custom"))
    assert isinstance(store, KeyringSecretsStore) and store.service == "custom"


def test_no_keyring_available_is_a_clear_error(tmp_path: Path) -> None:
    from keyring.backends.fail import Keyring as FailKeyring

    previous = keyring.get_keyring()
    keyring.set_keyring(FailKeyring())
    try:
        result = grambot(_ws(tmp_path, "keyring"), "secrets", "set", "bot", "t", input="vvvv")
    finally:
        keyring.set_keyring(previous)
    assert result.exit_code == 1
    assert "no system keyring is available" in result.output and "vvvv" not in result.output


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _set_secret(ws: Path, value: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "grambot", "secrets", "set", "s", "token", "-w", str(ws)],
        input=value,
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("backend", ["file", "keyring"])
def test_secrets_set_reloads_the_instance_in_a_running_engine(tmp_path: Path, backend: str) -> None:
    env = {
        "PYTHONPATH": str(REPO),
        "PYTHON_KEYRING_BACKEND": "tests.keyring_backends.FileKeyring",
        FILE_ENV: str(tmp_path / "keyring.json"),
    }
    ws = workspace_with(
        tmp_path / "ws",
        [entry("s", "secretive")],
        secrets={"backend": backend},
        retry={"initialDelay": 60, "maxDelay": 60},
    )
    engine = EngineProcess(ws, "--log-format", "json", env=env)
    token_sha = ws / ".scout" / "plugins" / "s" / "token_sha"
    try:
        engine.wait_ready()
        engine.wait_states({"s": "failed"})  # needs the secret: waits for it, not for time
        _set_secret(ws, TOKEN, env)
        engine.wait_states({"s": "loaded"})
        assert token_sha.read_text() == _sha(TOKEN)
        _set_secret(ws, "second-value", env)
        eventually(lambda: token_sha.read_text() == _sha("second-value"), what="reload")
        engine.wait_states({"s": "loaded"})
        status_text = (ws / ".scout" / "status.json").read_text()
    finally:
        assert engine.stop() == 0, engine.output
    output = engine.output
    for line in output.splitlines():
        json.loads(line)  # --log-format json: every line is one JSON object
    assert TOKEN not in output and "second-value" not in output
    assert "loaded with token ***" in output
    assert TOKEN not in status_text
    lines = [json.loads(line) for line in output.splitlines()]
    assert any("secrets of s changed: reloading" in line["message"] for line in lines)
    about_s = [line for line in lines if line["message"].startswith("instance s ")]
    assert about_s and all(line.get("instance") == "s" for line in about_s), about_s


def test_an_instance_writing_its_own_secrets_is_not_reloaded(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [entry("s", "secretive", write_own_secret=True)])
    (ws / ".scout" / "secrets.json").write_text(json.dumps({"s": {"token": TOKEN}}))
    (ws / ".scout" / "secrets.json").chmod(0o600)
    with running(ws, "--log-level", "debug") as engine:
        engine.wait_states({"s": "loaded"})
        engine.wait_for_log("secrets changed; no running instance is affected")
        loads = (ws / ".scout" / "plugins" / "s" / "loads").read_text().split()
        assert loads == ["load"]
    assert TOKEN not in engine.output


def test_text_log_lines_name_their_instance(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [entry("s", "secretive"), entry("m", "marker")])
    (ws / ".scout" / "secrets.json").write_text(json.dumps({"s": {"token": TOKEN}}))
    (ws / ".scout" / "secrets.json").chmod(0o600)
    engine = EngineProcess(ws)
    try:
        engine.wait_ready()
    finally:
        assert engine.stop() == 0, engine.output
    output = engine.output
    assert "grambot.plugin.s: loaded with token ***" in output
    for line in output.splitlines():
        if "instance" in line and "(plugin" in line:
            assert "instance s " in line or "instance m " in line, line
