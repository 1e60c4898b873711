"""Manifest fields (plugin.json) and the timeout settings: every problem names file and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from grambot.config.descriptor import load_descriptor
from grambot.config.settings import parse_settings
from grambot.errors import DescriptorError, SettingsError


def problems(tmp_path: Path, **fields: Any) -> dict[str, str]:
    path = tmp_path / "plugin.json"
    (tmp_path / "index.py").write_text("")
    path.write_text(json.dumps({"name": "p", "entry": "index.py", **fields}))
    with pytest.raises(DescriptorError) as info:
        load_descriptor(path, source="custom")
    assert all(p.file == path for p in info.value.problems)
    return {p.json_path: str(p) for p in info.value.problems}


@pytest.mark.parametrize(
    ("fields", "json_path", "says"),
    [
        ({"timeoutMs": -5}, "timeoutMs", "greater than 0"),
        ({"timeoutMs": 9}, "timeoutMs", "at least 10 (ms)"),
        ({"timeoutMs": "5000"}, "timeoutMs", "valid integer"),
        ({"version": 1}, "version", "valid string"),
        ({"allowedEnv": "HOME"}, "allowedEnv", "valid list"),
        ({"allowedEnv": ["A=B"]}, "allowedEnv[0]", "environment variable name"),
        ({"allowedModules": ["json", "not-a-module"]}, "allowedModules[1]", "module name"),
        ({"allowedModules": [""]}, "allowedModules[0]", "module name"),
        ({"allowedVaultPaths": ["../other/"]}, "allowedVaultPaths[0]", "vault path prefix"),
        ({"allowedVaultPaths": ["/shared/x"]}, "allowedVaultPaths[0]", "no leading '/'"),
        ({"allowedVaultPaths": ["shared//x"]}, "allowedVaultPaths[0]", "vault path prefix"),
        ({"cacheKeyPrefix": ""}, "cacheKeyPrefix", "at least 1 character"),
        ({"cacheKeyPrefix": 3}, "cacheKeyPrefix", "valid string"),
    ],
)
def test_each_bad_field_is_named(
    tmp_path: Path, fields: dict[str, Any], json_path: str, says: str
) -> None:
    found = problems(tmp_path, **fields)
    assert list(found) == [json_path]
    assert str(tmp_path / "plugin.json") in found[json_path] and says in found[json_path]


def test_every_field_valid(tmp_path: Path) -> None:
    path = tmp_path / "plugin.json"
    (tmp_path / "index.py").write_text("")
    path.write_text(
        json.dumps(
            {
                "name": "p",
                "entry": "index.py",
                "version": "2.0.0",
                "timeoutMs": 10,
                "allowedEnv": ["A", "lower_ok"],
                "allowedModules": ["json", "email.mime"],
                "allowedVaultPaths": ["shared/team/", "shared/x"],
                "cacheKeyPrefix": "p:",
            }
        )
    )
    d = load_descriptor(path, source="custom")
    assert d.allowed_modules == ("json", "email.mime") and d.timeout_ms == 10


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "100"])
def test_override_ms_setting_is_a_positive_integer(tmp_path: Path, value: Any) -> None:
    data = json.dumps({"plugins": [], "timeouts": {"overrideMs": value}})
    with pytest.raises(SettingsError) as info:
        parse_settings(data, path=tmp_path / "settings.json", workspace=tmp_path)
    (problem,) = info.value.problems
    assert problem.json_path == "timeouts.overrideMs" and problem.file == tmp_path / "settings.json"


def test_override_ms_setting_parses(tmp_path: Path) -> None:
    data = json.dumps({"plugins": [], "timeouts": {"overrideMs": 2500, "load": 3}})
    settings = parse_settings(data, path=tmp_path / "settings.json", workspace=tmp_path)
    assert settings.timeouts.override_ms == 2500 and settings.timeouts.load == 3
