"""The file secrets store and the per-instance view plugins get."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from grambot.errors import SecretsError
from grambot.secrets.store import FileSecretsStore, InstanceSecrets


def test_set_get_delete_round_trip_with_mode_0600(tmp_path: Path) -> None:
    store = FileSecretsStore(tmp_path / ".scout" / "secrets.json")
    store.set("bot", "token", "t-1")
    store.set("bot", "other", "o-1")
    assert store.get("bot", "token") == "t-1"
    assert store.keys("bot") == ["other", "token"]
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert json.loads(store.path.read_text()) == {"bot": {"other": "o-1", "token": "t-1"}}
    assert store.delete("bot", "token") is True
    assert store.delete("bot", "token") is False
    assert store.get("bot", "token") is None


def test_instance_view_sees_only_its_own_instance(tmp_path: Path) -> None:
    store = FileSecretsStore(tmp_path / "secrets.json")
    store.set("a", "token", "secret-a")
    store.set("b", "token", "secret-b")
    view = InstanceSecrets(store, "a")
    assert view.get("token") == "secret-a"
    assert view.keys() == ["token"]
    view.set("new", "x")
    assert store.get("b", "new") is None
    assert "secret-a" not in repr(view)


def test_require_names_the_command_not_the_value(tmp_path: Path) -> None:
    view = InstanceSecrets(FileSecretsStore(tmp_path / "secrets.json"), "tg")
    with pytest.raises(SecretsError, match=r"grambot secrets set tg botToken"):
        view.require("botToken")


def test_world_readable_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text('{"a": {"k": "v"}}')
    os.chmod(path, 0o644)
    with pytest.raises(SecretsError, match=r"readable by others.*chmod 600"):
        FileSecretsStore(path).get("a", "k")


def test_corrupt_file_names_the_file_and_position_but_not_the_content(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text('{"a": {"k": "very-secret"')
    os.chmod(path, 0o600)
    with pytest.raises(SecretsError) as info:
        FileSecretsStore(path).get("a", "k")
    assert str(path) in str(info.value) and "line 1" in str(info.value)
    assert "very-secret" not in str(info.value)


def test_deep_nesting_names_the_instance_but_not_the_content(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    deep = "[" * 150 + "]" * 150
    path.write_text('{"a": {"k": "v"}, "b": ["very-secret", ' + deep + "]}")
    os.chmod(path, 0o600)
    with pytest.raises(SecretsError) as info:
        FileSecretsStore(path).get("a", "k")
    assert str(info.value) == (
        f"{path}: b: expected an object of string values (got JSON nested deeper than 100 levels)"
    )


def test_brackets_inside_values_are_not_nesting(tmp_path: Path) -> None:
    store = FileSecretsStore(tmp_path / "secrets.json")
    value = '[{\\"' * 200  # quotes and backslashes too: the scan must skip whole strings
    store.set("a", "k", value)
    store.set("a", "[{", "x")
    assert store.get("a", "k") == value
    assert store.keys("a") == ["[{", "k"]


def test_failed_write_leaves_the_previous_file_intact(tmp_path: Path) -> None:
    store = FileSecretsStore(tmp_path / "secrets.json")
    store.set("a", "k", "v1")
    with pytest.raises(SecretsError):
        store.set("a", "k", 123)  # type: ignore[arg-type]
    assert store.get("a", "k") == "v1"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
