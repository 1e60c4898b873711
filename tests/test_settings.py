"""Tests for grambot.config.settings: reading `.scout/settings.json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from grambot.config.settings import (
    EngineSettings,
    InstanceConfig,
    Timeouts,
    empty_settings,
    freeze,
    load_settings,
    parse_settings,
    settings_path,
)
from grambot.errors import Problem, SettingsError


def entry(instance_id: Any, plugin_id: Any = "p", **extra: Any) -> dict[str, Any]:
    return {"instanceId": instance_id, "pluginId": plugin_id, **extra}


def write(workspace: Path, content: bytes | str | dict[str, Any]) -> Path:
    path = settings_path(workspace)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, dict):
        content = json.dumps({"plugins": [], **content})  # a file needs its plugins list
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def parse(data: dict[str, Any] | str, workspace: Path = Path("/ws")) -> EngineSettings:
    text = data if isinstance(data, str) else json.dumps({"plugins": [], **data})
    return parse_settings(text, path=workspace / ".scout/settings.json", workspace=workspace)


def file_error(tmp_path: Path, content: bytes | str | dict[str, Any]) -> Problem:
    path = write(tmp_path, content)
    with pytest.raises(SettingsError) as info:
        load_settings(tmp_path)
    assert len(info.value.problems) == 1
    problem = info.value.problems[0]
    assert problem.file == path
    assert str(path) in str(info.value)
    return problem


def test_valid_file_with_two_entries(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "plugins": [
                entry("telegram", "telegram", enabled=True, settings={"polling": True}),
                entry("openai-codex", "openai", enabled=False, extra="kept"),
            ],
            "timeouts": {"create": 5, "eventHandler": 1.5},
            "agent": {"model": "x"},
            "somethingNew": [1, 2],
        },
    )
    s = load_settings(tmp_path)
    assert s.path == path and s.workspace == tmp_path
    assert s.instances == (
        InstanceConfig("telegram", "telegram", True, {"polling": True}, "plugins[0]"),
        InstanceConfig("openai-codex", "openai", False, {}, "plugins[1]"),
    )
    assert s.instance("openai-codex") is s.instances[1]
    assert s.instance("nope") is None
    assert s.timeouts == Timeouts(create=5.0, load=30.0, unload=10.0, event_handler=1.5)
    assert s.problems == () and s.held_instance_ids == frozenset()
    assert s.raw["somethingNew"] == (1, 2)
    assert s.raw["plugins"][1]["extra"] == "kept"


def test_enabled_defaults_to_true() -> None:
    s = parse({"plugins": [entry("a")]})
    assert s.instances[0].enabled is True


def test_missing_file_means_no_instances(tmp_path: Path) -> None:
    s = load_settings(tmp_path)
    assert s.instances == () and s.problems == ()
    assert s.path == tmp_path / ".scout" / "settings.json"
    assert s == empty_settings(tmp_path)
    other = tmp_path / "elsewhere.json"
    assert load_settings(tmp_path, other).path == other


@pytest.mark.parametrize("content", [b"", b"  \n\t\r\n"])
def test_empty_file_is_an_error(tmp_path: Path, content: bytes) -> None:
    assert file_error(tmp_path, content).message == "file is empty"


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    problem = file_error(tmp_path, '{\n  "plugins": [\n    {"a": 1}\n    {"b": 2}\n  ]\n}')
    assert problem.message == "invalid JSON at line 4, column 5: Expecting ',' delimiter"


def test_non_utf8_names_byte_offset(tmp_path: Path) -> None:
    problem = file_error(tmp_path, b'{"plugins": "\xff"}')
    assert "UTF-8" in problem.message and "offset 13" in problem.message


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    write(tmp_path, b'\xef\xbb\xbf{"plugins": []}')
    assert load_settings(tmp_path).instances == ()


def test_top_level_list_is_an_error(tmp_path: Path) -> None:
    assert "top level must be a JSON object" in file_error(tmp_path, "[]").message


def test_plugins_not_a_list_is_an_error(tmp_path: Path) -> None:
    problem = file_error(tmp_path, {"plugins": {"instanceId": "a"}})
    assert problem.json_path == "plugins"
    assert "must be a list" in problem.message


def test_wrong_types_name_path_and_value() -> None:
    s = parse(
        {
            "plugins": [
                entry("good"),
                entry("bad1", enabled="yes"),
                entry("bad2", enabled=1, settings=[1, 2]),
                "not an object",
                {"pluginId": "p"},
            ]
        }
    )
    assert [i.instance_id for i in s.instances] == ["good"]
    got = {(p.json_path, p.value) for p in s.problems}
    assert got == {
        ("plugins[1].enabled", "'yes'"),
        ("plugins[2].enabled", "1"),
        ("plugins[2].settings", "[1, 2]"),
        ("plugins[3]", "'not an object'"),
        ("plugins[4].instanceId", None),
    }
    by_path = {p.json_path: p for p in s.problems}
    assert by_path["plugins[1].enabled"].message == "enabled must be true or false"
    assert by_path["plugins[2].settings"].message == "settings must be an object"
    assert by_path["plugins[4].instanceId"].message == "instanceId is required"
    assert all(p.file == Path("/ws/.scout/settings.json") for p in s.problems)
    assert s.held_instance_ids == {"bad1", "bad2"}


@pytest.mark.parametrize(
    "bad_id",
    ["../x", "a/b", ".", "..", "", "a\u0000b", "a" * 65, "t\u0435legram", "a b", "a\n", 7, None],
)
def test_bad_instance_ids_are_rejected(bad_id: Any) -> None:
    s = parse({"plugins": [entry(bad_id), entry("ok")]})
    assert [i.instance_id for i in s.instances] == ["ok"]
    assert len(s.problems) == 1
    assert s.problems[0].json_path == "plugins[0].instanceId"
    assert s.problems[0].value == repr(bad_id)
    assert s.held_instance_ids == frozenset()


def test_bad_id_message_is_human() -> None:
    s = parse({"plugins": [entry("a/b")]})
    assert s.problems[0].message == (
        "instanceId must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$ "
        "(letters, digits, '-' and '_', at most 64, no '/', '.', or spaces)"
    )


def test_longest_id_and_bad_plugin_id() -> None:
    s = parse({"plugins": [entry("a" * 64), entry("b", "../evil")]})
    assert [i.instance_id for i in s.instances] == ["a" * 64]
    assert s.problems[0].json_path == "plugins[1].pluginId"
    assert s.problems[0].message.startswith("pluginId must match")
    assert s.held_instance_ids == {"b"}


def test_long_value_is_truncated() -> None:
    s = parse({"plugins": [entry("a", enabled="x" * 500)]})
    value = s.problems[0].value
    assert value is not None and len(value) <= 80 and value.endswith("...")


def test_duplicate_ids_ignoring_case() -> None:
    s = parse({"plugins": [entry("bot"), entry("other"), entry("x"), entry("Bot"), entry("BOT")]})
    assert [i.instance_id for i in s.instances] == ["bot", "other", "x"]
    assert [str(p).split(": ", 1)[1] for p in s.problems] == [
        "plugins[3].instanceId: duplicate instanceId 'Bot' (already used by plugins[0] as 'bot'; "
        "ids are compared ignoring case) (got 'Bot')",
        "plugins[4].instanceId: duplicate instanceId 'BOT' (already used by plugins[0] as 'bot'; "
        "ids are compared ignoring case) (got 'BOT')",
    ]
    assert s.held_instance_ids == frozenset()


def test_duplicate_of_invalid_entry_is_still_a_duplicate() -> None:
    s = parse({"plugins": [entry("bot", enabled="no"), entry("BOT")]})
    assert s.instances == ()
    assert s.held_instance_ids == {"bot"}
    assert s.problems[1].json_path == "plugins[1].instanceId"


def test_bad_entry_does_not_hide_valid_ones() -> None:
    s = parse({"plugins": [entry("a"), entry("b", settings="x"), entry("c")]})
    assert [(i.instance_id, i.json_path) for i in s.instances] == [
        ("a", "plugins[0]"),
        ("c", "plugins[2]"),
    ]
    assert s.held_instance_ids == {"b"}
    assert s.instance("b") is None


def test_plugin_dirs_resolved_against_workspace(tmp_path: Path) -> None:
    s = parse({"pluginDirs": ["plugins", "more/dir", "/abs/dir"]}, tmp_path)
    assert s.plugin_dirs == (tmp_path / "plugins", tmp_path / "more" / "dir", Path("/abs/dir"))
    assert parse({}, tmp_path).plugin_dirs == (tmp_path / "plugins",)


def test_bad_engine_keys_list_every_problem(tmp_path: Path) -> None:
    write(tmp_path, {"timeouts": {"unload": -1, "load": "3"}, "pluginDirs": "plugins"})
    with pytest.raises(SettingsError) as info:
        load_settings(tmp_path)
    paths = {p.json_path: p for p in info.value.problems}
    assert set(paths) == {"timeouts.unload", "timeouts.load", "pluginDirs"}
    assert paths["timeouts.unload"].message == "unload must be a number greater than 0"
    assert paths["timeouts.unload"].value == "-1"
    assert "timeouts.unload" in str(info.value)


@pytest.mark.parametrize("bad", [0, True, None, "NaN"])
def test_timeouts_must_be_positive_numbers(bad: Any) -> None:
    text = '{"plugins": [], "timeouts": {"create": %s}}' % (
        bad if bad == "NaN" else json.dumps(bad)
    )
    with pytest.raises(SettingsError) as info:
        parse(text)
    assert info.value.problems[0].json_path == "timeouts.create"


def test_agent_and_secrets_must_be_objects() -> None:
    with pytest.raises(SettingsError) as info:
        parse({"agent": [], "secrets": "file"})
    assert {p.json_path for p in info.value.problems} == {"agent", "secrets"}


def test_settings_key_order_is_irrelevant() -> None:
    one = parse({"plugins": [entry("a", settings={"x": 1, "y": {"p": 1, "q": 2}})]})
    two = parse({"plugins": [entry("a", settings={"y": {"q": 2, "p": 1}, "x": 1})]})
    assert one.instances[0] == two.instances[0]
    assert one.instances[0].settings == {"x": 1, "y": {"p": 1, "q": 2}}


@pytest.mark.parametrize("text", ["[" * 100000, '{"a":' * 100000, "[" * 150 + "]" * 150])
def test_deep_nesting_is_a_settings_error(text: str) -> None:
    with pytest.raises(SettingsError) as info:
        parse(text)
    assert "nested" in info.value.problems[0].message


def test_huge_file_is_refused(tmp_path: Path) -> None:
    write(tmp_path, b"{" + b" " * (5 * 1024 * 1024) + b"}")
    with pytest.raises(SettingsError) as info:
        load_settings(tmp_path)
    assert "larger than" in info.value.problems[0].message


def test_unreadable_path_is_a_settings_error(tmp_path: Path) -> None:
    settings_path(tmp_path).mkdir(parents=True)  # a directory where the file should be
    with pytest.raises(SettingsError):
        load_settings(tmp_path)


def test_raw_is_read_only() -> None:
    s = parse({"plugins": [entry("a", settings={"k": [1, {"z": 2}]})], "agent": {"model": "m"}})
    with pytest.raises(TypeError):
        s.raw["agent"] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        s.raw["agent"]["model"] = "n"
    with pytest.raises(TypeError):
        s.raw["plugins"][0]["settings"]["k"][1]["z"] = 3
    assert isinstance(s.raw["plugins"], tuple)


def test_instance_settings_are_independent_of_raw() -> None:
    s = parse({"plugins": [entry("a", settings={"k": [1]})]})
    s.instances[0].settings["k"].append(2)
    assert s.raw["plugins"][0]["settings"]["k"] == (1,)


def test_freeze() -> None:
    frozen = freeze({"a": [1, {"b": []}]})
    assert frozen["a"] == (1, freeze({"b": []}))
    assert frozen["a"][1]["b"] == ()
    with pytest.raises(TypeError):
        frozen["a"][1]["b"] = 1
    assert freeze(3) == 3
