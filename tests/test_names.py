"""One rule for ids and secret keys, one spelling of a JSON path (grambot.config.names), shared
by settings.json, plugin.json, the secrets sources and the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from grambot.cli.scaffold import scaffold
from grambot.config.names import (
    entry_index,
    entry_path,
    is_secret_key,
    is_valid_id,
    json_path,
)
from grambot.config.settings import parse_settings
from grambot.errors import ScaffoldError
from grambot.secrets.sources import split_name

GOOD_IDS = ["a", "tg", "Bot-1", "my_bot", "9lives", "x" * 64]
BAD_IDS = ["", "-bot", "_bot", "a.b", "a/b", "a b", "x" * 65, "bot\n", "é", 3, None]


@pytest.mark.parametrize("value", GOOD_IDS)
def test_good_ids(value: str) -> None:
    assert is_valid_id(value)


@pytest.mark.parametrize("value", BAD_IDS)
def test_bad_ids(value: object) -> None:
    assert not is_valid_id(value)


def test_secret_keys() -> None:
    assert all(is_secret_key(k) for k in ["apiKey", "bot.token", "_x", "a-b", "k" * 128])
    assert not any(is_secret_key(k) for k in ["", ".x", "a b", "a/b", "k" * 129, 1])


def test_json_paths() -> None:
    assert json_path(("plugins", 2, "instanceId")) == "plugins[2].instanceId"
    assert json_path(("chatIds", 0)) == "chatIds[0]"
    assert json_path(()) == ""
    assert entry_path(3) == "plugins[3]"
    assert entry_path(3, "settings", "x") == "plugins[3].settings.x"
    assert entry_index(entry_path(12, "settings", "x")) == 12
    assert entry_index("retry.maxDelay") is None


@pytest.mark.parametrize("value", ["a.b", "x" * 65])
def test_every_reader_applies_the_same_rule(value: str, tmp_path: Path) -> None:
    text = f'{{"plugins": [{{"instanceId": "{value}", "pluginId": "echo"}}]}}'
    settings = parse_settings(text, path=tmp_path / "settings.json", workspace=tmp_path)
    assert [p.json_path for p in settings.problems] == ["plugins[0].instanceId"]
    assert split_name(f"{value}__apiKey") is None
    with pytest.raises(ScaffoldError, match="must match"):
        scaffold(tmp_path / "plugins", value, "tool")
    assert split_name("tg__apiKey") == ("tg", "apiKey")
