"""Management commands: plugins, enable, disable, remove, validate, new (in process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from grambot.cli import main
from tests.helpers import FIXTURE_PLUGINS

pytestmark = pytest.mark.usefixtures("keep_root_logging")


def grambot(ws: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, [*args, "--workspace", str(ws)], input=input)


ORIGINAL = """{
    "zeta": 1,
    "pluginDirs": ["%s"],
    "plugins": [
        {"pluginId": "marker", "instanceId": "m1", "note": "keep me"}
    ],
    "alpha": {"x": 1}
}
"""


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / ".scout").mkdir()
    (tmp_path / ".scout" / "settings.json").write_text(ORIGINAL % FIXTURE_PLUGINS)
    return tmp_path


def settings_of(ws: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ws / ".scout" / "settings.json").read_text())
    return data


def test_enable_adds_an_instance_keeping_unknown_keys_order_and_indent(ws: Path) -> None:
    result = grambot(
        ws,
        "enable",
        "probe",
        "--instance",
        "p1",
        "--set",
        "label=hi",
        "--set",
        "tool_name=t1",
        "--no-input",
    )
    assert result.exit_code == 0, result.output
    assert "added instance 'p1'" in result.output
    data = settings_of(ws)
    assert list(data) == ["zeta", "pluginDirs", "plugins", "alpha"]
    assert data["plugins"][0] == {"pluginId": "marker", "instanceId": "m1", "note": "keep me"}
    assert list(data["plugins"][0]) == ["pluginId", "instanceId", "note"]
    assert data["plugins"][1] == {
        "instanceId": "p1",
        "pluginId": "probe",
        "enabled": True,
        "settings": {"label": "hi", "tool_name": "t1"},
    }
    assert data["alpha"] == {"x": 1}
    assert (ws / ".scout" / "settings.json").read_text().startswith('{\n    "zeta": 1,')


def test_enable_refuses_a_value_failing_the_schema_and_writes_nothing(ws: Path) -> None:
    before = (ws / ".scout" / "settings.json").read_bytes()
    result = grambot(
        ws, "enable", "probe", "--set", "fail_in=bogus", "--set", "sync_stages=3", "--no-input"
    )
    assert result.exit_code == 1
    assert "refused, nothing written" in result.output
    assert "plugins[1].settings.fail_in: Input should be '', 'create', 'load' or 'unload'" in (
        result.output
    )
    assert "(got 'bogus')" in result.output
    assert "plugins[1].settings.sync_stages: Input should be a valid boolean" in result.output
    assert (ws / ".scout" / "settings.json").read_bytes() == before


def test_enable_unknown_plugin_and_foreign_instance_are_refused(ws: Path) -> None:
    result = grambot(ws, "enable", "nope", "--no-input")
    assert result.exit_code == 1 and "no plugin with id 'nope'; available plugins:" in (
        result.output
    )
    result = grambot(ws, "enable", "probe", "--instance", "m1", "--no-input")
    assert result.exit_code == 1
    assert "instance 'm1' already exists with plugin 'marker'" in result.output


def test_enable_existing_instance_enables_and_merges_settings(ws: Path) -> None:
    assert (
        grambot(
            ws, "enable", "probe", "--set", "label=a", "--set", "tool_name=t", "--no-input"
        ).exit_code
        == 0
    )
    assert grambot(ws, "disable", "probe").exit_code == 0
    assert settings_of(ws)["plugins"][1]["enabled"] is False
    result = grambot(ws, "enable", "probe", "--set", "label=b", "--no-input")
    assert result.exit_code == 0 and "enabled instance 'probe'" in result.output
    entry = settings_of(ws)["plugins"][1]
    assert entry["enabled"] is True and entry["settings"] == {"label": "b", "tool_name": "t"}


def test_set_values_are_json_when_they_parse(ws: Path) -> None:
    from grambot.config.edit import parse_assignments

    assert parse_assignments(["a=1", "b=true", "c=x y", 'd=["q"]', "e.f=2", "g=", 'h="7"']) == {
        "a": 1,
        "b": True,
        "c": "x y",
        "d": ["q"],
        "e": {"f": 2},
        "g": "",
        "h": "7",
    }
    result = grambot(ws, "enable", "probe", "--set", "novalue", "--no-input")
    assert result.exit_code == 1 and "expected key=value" in result.output


def test_disable_and_remove(ws: Path) -> None:
    result = grambot(ws, "disable", "M1")  # ids are matched ignoring case
    assert result.exit_code == 0, result.output
    assert settings_of(ws)["plugins"][0] == {
        "pluginId": "marker",
        "instanceId": "m1",
        "note": "keep me",
        "enabled": False,
    }
    assert "already disabled" in grambot(ws, "disable", "m1").output
    result = grambot(ws, "remove", "ghost")
    assert result.exit_code == 1 and "no instance 'ghost'" in result.output
    assert "instances: m1" in result.output
    result = grambot(ws, "remove", "m1")
    assert result.exit_code == 0 and "kept its data" in result.output
    assert settings_of(ws)["plugins"] == []
    assert list(settings_of(ws)) == ["zeta", "pluginDirs", "plugins", "alpha"]


def test_edits_of_a_broken_file_are_refused(ws: Path) -> None:
    path = ws / ".scout" / "settings.json"
    path.write_text('{"plugins": [}')
    result = grambot(ws, "disable", "m1")
    assert result.exit_code == 1
    assert "invalid JSON at line 1, column 14" in result.output
    assert "fix the settings file first" in result.output
    assert path.read_text() == '{"plugins": [}'


def test_enable_creates_a_missing_settings_file(tmp_path: Path) -> None:
    result = grambot(tmp_path, "enable", "hello", "--no-input")
    # no pluginDirs yet: the default `plugins` folder has no plugin `hello`
    assert result.exit_code == 1 and "no plugin with id 'hello'" in result.output
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    assert grambot(tmp_path, "new", "hello", "--kind", "tool").exit_code == 0
    result = grambot(tmp_path, "enable", "hello", "--no-input")
    assert result.exit_code == 0, result.output
    assert settings_of(tmp_path) == {
        "plugins": [{"instanceId": "hello", "pluginId": "hello", "enabled": True, "settings": {}}]
    }


def test_validate_ok_and_problems(ws: Path) -> None:
    result = grambot(ws, "validate")
    assert result.exit_code == 0, result.output
    assert "ok:" in result.output and "1 instance(s), 1 enabled" in result.output

    data = settings_of(ws)
    data["plugins"] += [
        {"instanceId": "p", "pluginId": "probe", "settings": {"fail_in": "never"}},
        {"instanceId": "off", "pluginId": "probe", "enabled": False, "settings": {"x": 1}},
        {"instanceId": "g", "pluginId": "ghost"},
        {"instanceId": "bad id", "pluginId": "probe"},
        {"instanceId": "h", "pluginId": "probe", "settings": {"hang_in": "load"}},
    ]
    data["retry"] = {"initialDelay": 0}
    data["secrets"] = {"backend": "vault"}
    (ws / ".scout" / "settings.json").write_text(json.dumps(data))
    result = grambot(ws, "validate")
    assert result.exit_code == 1
    out = result.output
    assert "5 problem(s):" in out, out
    assert "plugins[4].instanceId: instanceId must match" in out
    assert "retry.initialDelay" in out and "secrets.backend" in out
    assert "plugins[1].settings.fail_in: Input should be" in out and "(got 'never')" in out
    assert "plugins[3].pluginId: no plugin with id 'ghost'" in out
    assert "off" not in out, "disabled instances are not checked against their schema"
    # validate never runs create/load: the hanging instance did not hang it
    assert not (ws / ".scout" / "plugins").exists()


def test_validate_reports_file_level_problems(ws: Path) -> None:
    (ws / ".scout" / "settings.json").write_text('{"plugins": 3}')
    result = grambot(ws, "validate")
    assert result.exit_code == 1
    assert "settings.json: plugins: plugins must be a list of objects (got 3)" in result.output


def test_validate_reports_bad_descriptors(ws: Path, tmp_path: Path) -> None:
    bad = tmp_path / "more" / "broken"
    bad.mkdir(parents=True)
    (bad / "plugin.json").write_text('{"id": "broken", "entry": "../escape.py"}')
    data = settings_of(ws)
    data["pluginDirs"].append(str(tmp_path / "more"))
    (ws / ".scout" / "settings.json").write_text(json.dumps(data))
    result = grambot(ws, "validate")
    assert result.exit_code == 1 and "broken" in result.output and "plugin.json" in result.output


def test_plugins_lists_descriptions_and_settings_fields(ws: Path) -> None:
    result = grambot(ws, "plugins")
    assert result.exit_code == 0, result.output
    assert "probe  Probe" in result.output
    assert "Test plugin whose settings choose where it fails or hangs." in result.output
    assert "fail_in: '' | 'create' | 'load' | 'unload' = ''" in result.output
    result = grambot(ws, "plugins", "--json")
    listing = {p["id"]: p for p in json.loads(result.output)["plugins"]}
    assert {"probe", "marker", "counter", "flaky"} <= set(listing)
    fields = {f["name"]: f for f in listing["probe"]["settings"]}
    assert fields["sync_stages"] == {
        "name": "sync_stages",
        "type": "bool",
        "required": False,
        "default": "False",
        "description": None,
    }
    assert listing["marker"]["settings"] == []


@pytest.mark.parametrize("kind", ["connector", "inference", "tool", "image"])
def test_new_scaffolds_a_plugin_that_loads(tmp_path: Path, kind: str) -> None:
    (tmp_path / ".scout").mkdir()
    (tmp_path / ".scout" / "settings.json").write_text(
        json.dumps({"pluginDirs": ["mine", str(FIXTURE_PLUGINS)], "plugins": []})
    )
    result = grambot(tmp_path, "new", f"my-{kind}", "--kind", kind)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "mine" / f"my-{kind}"
    assert {p.name for p in folder.iterdir()} == {"plugin.json", "plugin.py", f"test_my_{kind}.py"}
    assert grambot(tmp_path, "enable", f"my-{kind}", "--no-input").exit_code == 0
    assert grambot(tmp_path, "validate").exit_code == 0

    import asyncio

    from grambot.engine import Engine

    async def load() -> str:
        engine = Engine(tmp_path, builtin_dir=None, entry_points=False)
        await engine.start()
        try:
            instances = engine.instances()
            assert [i.state for i in instances] == ["loaded"], instances
            return str(instances[0].registrations())
        finally:
            await engine.stop(drain_deadline=0.5)

    registrations = asyncio.run(load())
    assert f"my-{kind}" in registrations or "my_tool" in registrations

    again = grambot(tmp_path, "new", f"my-{kind}", "--kind", kind)
    assert again.exit_code == 1 and "already exists" in again.output


@pytest.mark.parametrize(
    ("kind", "tests"),
    # tool and inference: a second test through the bot (grambot.testing.fake_chat)
    [("tool", 2), ("inference", 2), ("connector", 1), ("image", 1)],
)
def test_the_scaffolded_tests_pass(tmp_path: Path, kind: str, tests: int) -> None:
    (tmp_path / ".scout").mkdir()
    assert grambot(tmp_path, "new", "echoer", "--kind", kind).exit_code == 0
    folder = tmp_path / "plugins" / "echoer"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=tmp_path,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{tests} passed" in run.stdout


def test_new_refuses_bad_ids_and_kinds(ws: Path) -> None:
    result = grambot(ws, "new", "bad/id", "--kind", "tool")
    assert result.exit_code == 1 and "must match" in result.output
    result = grambot(ws, "new", "x", "--kind", "database")
    assert result.exit_code == 2
    result = grambot(ws, "new", "probe", "--kind", "tool")
    assert result.exit_code == 1 and "already exists" in result.output


def test_set_keeps_text_for_fields_the_schema_types_as_text(ws: Path) -> None:
    result = grambot(
        ws, "enable", "probe", "--set", "label=123", "--set", "sync_stages=true", "--no-input"
    )
    assert result.exit_code == 0, result.output
    assert settings_of(ws)["plugins"][1]["settings"] == {"label": "123", "sync_stages": True}
