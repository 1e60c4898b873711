"""settings_edit: locked, atomic, order- and indentation-keeping edits; log formatting."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from grambot.app.logs import MASK, _Formatter
from grambot.config.edit import edit_settings, find_entry
from grambot.errors import EditRefused
from grambot.masking import Masker
from tests.helpers import FIXTURE_PLUGINS


def test_concurrent_cli_edits_never_lose_an_update(tmp_path: Path) -> None:
    scout = tmp_path / ".scout"
    scout.mkdir()
    (scout / "settings.json").write_text(
        json.dumps({"pluginDirs": [str(FIXTURE_PLUGINS)], "plugins": []})
    )
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "grambot",
                "enable",
                "marker",
                "--instance",
                f"m{n}",
                "--no-input",
                "-w",
                str(tmp_path),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(8)
    ]
    for proc in procs:
        _out, err = proc.communicate(timeout=50)
        assert proc.returncode == 0, err
    data = json.loads((scout / "settings.json").read_text())
    assert sorted(e["instanceId"] for e in data["plugins"]) == [f"m{n}" for n in range(8)]
    assert not [p for p in scout.iterdir() if p.name.endswith(".tmp")]


def test_tabs_mode_and_trailing_newline_are_kept(tmp_path: Path) -> None:
    path = tmp_path / ".scout" / "settings.json"
    path.parent.mkdir()
    path.write_text('{\n\t"plugins": [],\n\t"x": 1\n}\n')
    path.chmod(0o640)

    def change(doc):  # type: ignore[no-untyped-def]
        doc.plugins.append({"instanceId": "a", "pluginId": "marker"})

    edit_settings(tmp_path, change)
    text = path.read_text()
    assert text.startswith('{\n\t"plugins": [\n\t\t{') and text.endswith("}\n")
    assert path.stat().st_mode & 0o777 == 0o640


def test_a_change_making_the_file_invalid_is_refused(tmp_path: Path) -> None:
    path = tmp_path / ".scout" / "settings.json"
    path.parent.mkdir()
    path.write_text('{"plugins": [{"instanceId": "old", "pluginId": "x"}, {"bad": 1}]}')
    before = path.read_text()

    def change(doc):  # type: ignore[no-untyped-def]
        doc.data["timeouts"] = {"load": -1}

    with pytest.raises(EditRefused, match=r"timeouts.load: load must be a number greater than 0"):
        edit_settings(tmp_path, change)

    def add_bad(doc):  # type: ignore[no-untyped-def]
        doc.plugins.append({"instanceId": "new", "pluginId": "x", "enabled": "yes"})

    with pytest.raises(EditRefused, match=r"plugins\[2\].enabled"):
        edit_settings(tmp_path, add_bad, touched=lambda doc: ["new"])
    assert path.read_text() == before

    # the pre-existing bad entry does not block an unrelated edit
    def disable_old(doc):  # type: ignore[no-untyped-def]
        found = find_entry(doc, "OLD")
        assert found is not None
        found[1]["enabled"] = False

    edit_settings(tmp_path, disable_old, touched=lambda doc: ["old"])
    assert json.loads(path.read_text())["plugins"][0]["enabled"] is False


def _record(msg: str, *args: object, name: str = "grambot.plugins.manager") -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)


def test_json_lines_name_the_instance_and_mask_secrets() -> None:
    mask = Masker()
    mask.add(["hunter22", "ab"])  # too short values are not masked
    formatter = _Formatter("json", mask)
    line = json.loads(formatter.format(_record("instance %s failed: %s", "bot", "hunter22 ab")))
    assert line["instance"] == "bot" and line["message"] == "instance bot failed: *** ab"
    plugin_line = json.loads(formatter.format(_record("hi", name="grambot.plugin.tg")))
    assert plugin_line["instance"] == "tg"
    module_line = json.loads(
        formatter.format(_record("hi", name="grambot.instances.my-bot__12.helper"))
    )
    assert module_line["instance"] == "my-bot"
    assert "instance" not in json.loads(formatter.format(_record("engine line")))


def test_mask_covers_secrets_as_repr_and_json_quote_them() -> None:
    secret = "pa'ss\"w\\rd-\u00fcn\u00ef"
    mask = Masker()
    mask.add([secret])
    for fmt in ("text", "json"):
        formatter = _Formatter(fmt, mask)
        for message in (f"raw {secret}", f"repr {secret!r}", f"ascii {secret!a}"):
            line = formatter.format(_record("%s", message))
            for form in {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]}:
                assert form not in line, (fmt, message, line)
            assert "***" in line, (fmt, line)


def test_text_lines_tag_the_instance_when_the_line_does_not_say_it() -> None:
    formatter = _Formatter("text", MASK)
    assert formatter.format(_record("hi", name="grambot.instances.x__3.plugin")).endswith(
        "grambot.instances.x__3.plugin: hi"
    )
    record = _record("engine detail")
    record.instance = "y"
    assert formatter.format(record).endswith("grambot.plugins.manager [y]: engine detail")
    assert " [z]" not in formatter.format(_record("instance %s loaded", "z"))
