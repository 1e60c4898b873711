"""`grambot agent`, and the shipped example workspace being valid for every built-in."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from grambot.cli import main
from tests.isolation import shipped_example


def _workspace(tmp_path: Path) -> Path:
    return shipped_example(tmp_path)  # as committed: the repository's copy may be in use


def test_agent_set_validates_and_keeps_the_rest(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    runner = CliRunner()
    result = runner.invoke(
        main, ["agent", "-w", str(workspace), "--set", "inference=anthropic", "--set", "model=4"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads((workspace / ".scout" / "settings.json").read_text())
    assert data["agent"]["inference"] == "anthropic"
    assert data["agent"]["model"] == "4"  # text fields stay text
    assert data["agent"]["maxHistory"] == 40
    assert len(data["plugins"]) == 9

    before = (workspace / ".scout" / "settings.json").read_text()
    refused = runner.invoke(main, ["agent", "-w", str(workspace), "--set", "maxToolSteps=-1"])
    assert refused.exit_code != 0
    assert "agent.maxToolSteps" in refused.output
    assert (workspace / ".scout" / "settings.json").read_text() == before

    shown = runner.invoke(main, ["agent", "-w", str(workspace)])
    assert json.loads(shown.output)["inference"] == "anthropic"


def test_every_shipped_entry_is_valid_for_its_plugin(tmp_path: Path) -> None:
    """The disabled built-ins listed in the example workspace can be enabled as they are."""
    workspace = _workspace(tmp_path)
    settings_file = workspace / ".scout" / "settings.json"
    data = json.loads(settings_file.read_text())
    for entry in data["plugins"]:
        entry["enabled"] = True
    settings_file.write_text(json.dumps(data))
    result = CliRunner().invoke(main, ["validate", "-w", str(workspace)])
    assert result.exit_code == 0, result.output
    assert "9 instance(s), 9 enabled" in result.output
