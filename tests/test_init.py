"""First run anywhere: `grambot init`, `grambot run` where there is no
workspace, `grambot validate` without the default plugins/ folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from grambot.cli import main
from tests.runproc import EngineProcess

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("keep_root_logging")]


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_init_writes_a_console_on_echo_workspace_and_nothing_else(tmp_path: Path) -> None:
    root = tmp_path / "bot"
    result = run("init", str(root))
    assert result.exit_code == 0, result.output
    settings = json.loads((root / ".scout" / "settings.json").read_text())
    enabled = {(p["instanceId"], p["pluginId"]) for p in settings["plugins"] if p["enabled"]}
    assert enabled == {("console", "console"), ("echo", "echo")}
    assert len(settings["plugins"]) == 2  # nothing else, not even disabled entries
    assert settings["agent"]["inference"] == "echo"
    assert (root / "plugins").is_dir()
    ignored = (root / ".gitignore").read_text().splitlines()
    for name in (
        ".scout/secrets.json",
        ".scout/state.db",
        ".scout/state.db-wal",
        ".scout/state.db-shm",
        ".scout/status.json",
        ".scout/control-token",
        ".scout/requests/",
        ".scout/backups/",
        "*.log",
    ):
        assert name in ignored, name
    assert ".scout/settings.json" not in ignored
    commands = [line.split("#")[0].strip() for line in result.output.splitlines()]
    after = commands[commands.index("next:") + 1 :]
    assert len(after) == 3 and all(c for c in after), result.output
    assert after[0] == f"cd {root}" and after[1] == "grambot run"


def test_init_in_the_current_folder_prints_three_grambot_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".gitignore").write_text("node_modules/\n.scout/status.json")
    result = run("init")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    after = [line.split("#")[0].strip() for line in lines[lines.index("next:") + 1 :]]
    assert after[:2] == ["grambot run", "grambot plugins"] and len(after) == 3
    assert all(c.startswith("grambot ") for c in after)
    ignored = (tmp_path / ".gitignore").read_text().splitlines()
    assert ignored[0] == "node_modules/"  # what was there stays
    assert ignored.count(".scout/status.json") == 1 and ".scout/secrets.json" in ignored


def test_init_refuses_an_existing_workspace(tmp_path: Path) -> None:
    assert run("init", str(tmp_path)).exit_code == 0
    settings = tmp_path / ".scout" / "settings.json"
    settings.write_text('{"plugins": []}')
    result = run("init", str(tmp_path))
    assert result.exit_code == 1
    assert "already" in result.output and "nothing was written" in result.output
    assert settings.read_text() == '{"plugins": []}'


def test_init_never_replaces_a_settings_link_even_a_dangling_one(tmp_path: Path) -> None:
    scout = tmp_path / ".scout"
    scout.mkdir()
    (scout / "settings.json").symlink_to(tmp_path / "elsewhere.json")  # dangling
    result = run("init", str(tmp_path))
    assert result.exit_code == 1 and "nothing was written" in result.output
    assert (scout / "settings.json").is_symlink() and not (tmp_path / "elsewhere.json").exists()
    assert not (tmp_path / ".gitignore").exists() and not (tmp_path / "plugins").exists()
    assert [p.name for p in scout.iterdir()] == ["settings.json"]  # no temp file left


def test_validate_accepts_the_fresh_workspace_and_a_missing_default_plugins_folder(
    tmp_path: Path,
) -> None:
    assert run("init", str(tmp_path)).exit_code == 0
    result = run("validate", "-w", str(tmp_path))
    assert result.exit_code == 0, result.output
    (tmp_path / "plugins").rmdir()
    result = run("validate", "-w", str(tmp_path))
    assert result.exit_code == 0, result.output
    bare = tmp_path / "bare"
    (bare / ".scout").mkdir(parents=True)
    (bare / ".scout" / "settings.json").write_text('{"plugins": []}')
    result = run("validate", "-w", str(bare))  # no pluginDirs key: the default plugins/
    assert result.exit_code == 0, result.output


def test_validate_still_reports_a_missing_folder_named_in_plugin_dirs(tmp_path: Path) -> None:
    (tmp_path / ".scout").mkdir()
    (tmp_path / ".scout" / "settings.json").write_text(
        json.dumps({"pluginDirs": ["mine"], "plugins": []})
    )
    result = run("validate", "-w", str(tmp_path))
    assert result.exit_code == 1 and "mine does not exist" in result.output


def test_run_without_a_workspace_says_how_to_make_one(tmp_path: Path) -> None:
    result = run("run", "-w", str(tmp_path))
    assert result.exit_code == 1
    assert "not a grambot workspace" in result.output
    assert f"grambot init {tmp_path}" in result.output
    assert not (tmp_path / ".scout").exists()  # nothing was started, nothing written


def test_a_fresh_workspace_answers_printf_and_exits_0(tmp_path: Path) -> None:
    """`printf 'hi\n' | grambot run` in a workspace `grambot init` made: an answer, then exit 0
    at EOF (the console is the only connector)."""
    assert run("init", str(tmp_path)).exit_code == 0
    engine = EngineProcess(tmp_path, stdin_text="hi\n")
    code = engine.wait_exit()
    assert code == 0, engine.output
    assert "bot> hi" in engine.output, engine.output
    assert "Traceback" not in engine.output, engine.output
