"""CLI edits, checks and suggestions: --unset, references the agent block makes checked against the
running engine, "did you mean", --json listings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from grambot.cli import main
from tests.helpers import entry, eventually
from tests.runproc import EngineProcess, running, workspace_with


def _agent(workspace: Path, *args: str) -> tuple[int, str, dict[str, object]]:
    result = CliRunner().invoke(main, ["agent", "-w", str(workspace), *args])
    data = json.loads((workspace / ".scout" / "settings.json").read_text())
    return result.exit_code, result.output, data.get("agent", {})


def test_agent_unset_removes_a_key_and_refuses_one_that_is_not_there(tmp_path: Path) -> None:
    workspace = workspace_with(tmp_path, [entry("p")], agent={"tools": [], "maxHistory": 10})
    code, output, agent = _agent(workspace, "--unset", "tools")
    assert code == 0, output
    assert agent == {"maxHistory": 10}

    code, output, agent = _agent(workspace, "--unset", "maxHistroy")
    assert code == 1
    assert "agent has no key 'maxHistroy'" in output and "did you mean 'maxHistory'?" in output
    assert agent == {"maxHistory": 10}  # nothing written


def test_agent_tools_are_checked_against_the_running_engine(tmp_path: Path) -> None:
    workspace = workspace_with(tmp_path, [entry("p", tool_name="lookup")])
    # no engine: the tools an instance registers are not known, so nothing is claimed
    code, output, agent = _agent(workspace, "--set", 'tools=["lookpu"]')
    assert code == 0, output

    with running(workspace) as engine:
        eventually(lambda: (engine.status() or {}).get("instances"), 20, what="status.json")
        code, output, agent = _agent(workspace, "--set", 'tools=["lookpu"]')
        assert code == 1
        assert "no instance of the running engine registers a tool 'lookpu'" in output
        assert "did you mean 'lookup'?" in output
        assert agent == {"tools": ["lookpu"]}  # unchanged
        code, output, agent = _agent(workspace, "--set", 'tools=["lookup", "image_generate"]')
        assert code == 0, output
        assert agent == {"tools": ["lookup", "image_generate"]}
        # an instance that is loaded but registered no model is no inference provider
        code, output, agent = _agent(workspace, "--set", "inference=p")
        assert code == 1, output
        assert "agent.inference: instance 'p' (plugin 'probe') is not an inference provider" in (
            output
        )
        assert "inference" not in agent


def test_secrets_list_json_says_where_each_key_comes_from(tmp_path: Path) -> None:
    workspace = workspace_with(tmp_path, [entry("p")])
    runner = CliRunner()
    stored = runner.invoke(
        main, ["secrets", "set", "p", "token", "-w", str(workspace)], input="s3cret-value\n"
    )
    assert stored.exit_code == 0, stored.output
    result = runner.invoke(
        main,
        ["secrets", "list", "--json", "-w", str(workspace)],
        env={"GRAMBOT_SECRET__p__apiKey": "from-the-environment"},
    )
    assert result.exit_code == 0, result.output
    listing = json.loads(result.output)
    assert listing["instances"]["p"]["token"] == {"source": "store", "where": None}
    assert listing["instances"]["p"]["apiKey"]["source"] == "env"
    assert "s3cret-value" not in result.output and "from-the-environment" not in result.output


def _complete(workspace: Path, words: str) -> list[str]:
    """What bash's Tab offers after `words` (click's bash_complete protocol, a real process)."""
    env = {
        **os.environ,
        "_GRAMBOT_COMPLETE": "bash_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
        "GRAMBOT_WORKSPACE": str(workspace),
    }
    script = Path(sys.executable).parent / "grambot"  # the installed command, as a shell runs it
    done = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line]
    assert all("," in line for line in lines), done.stdout
    return [line.split(",", 1)[1] for line in lines]


def test_completion_scripts_and_ids(tmp_path: Path) -> None:
    for shell in ("bash", "zsh", "fish"):
        script = CliRunner().invoke(main, ["completion", shell])
        assert script.exit_code == 0 and "_GRAMBOT_COMPLETE" in script.output, script.output
    workspace = workspace_with(tmp_path, [entry("alpha"), entry("beta", "counter")])
    assert _complete(workspace, "grambot retry ") == ["alpha", "beta"]
    assert _complete(workspace, "grambot secrets get b") == ["beta"]
    assert _complete(workspace, "grambot check al") == ["alpha"]
    (workspace / ".scout" / "settings.json").unlink()
    os.mkfifo(workspace / ".scout" / "settings.json")  # never read: a Tab must not hang
    assert _complete(workspace, "grambot retry ") == []


def _cli(workspace: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args, "-w", str(workspace)])
    return result.exit_code, result.output


def _entries(workspace: Path) -> dict[str, dict[str, object]]:
    data = json.loads((workspace / ".scout" / "settings.json").read_text())
    return {e["instanceId"]: e for e in data["plugins"]}


def test_enable_takes_an_instance_id_and_unsets_settings(tmp_path: Path) -> None:
    workspace = workspace_with(
        tmp_path, [entry("tally", "probe", enabled=False, tool_name="t", sync_stages=True)]
    )
    code, output = _cli(workspace, "enable", "tally", "--unset", "tool_name", "--no-input")
    assert code == 0, output
    assert _entries(workspace)["tally"] == {
        "instanceId": "tally",
        "pluginId": "probe",
        "enabled": True,
        "settings": {"sync_stages": True},
    }
    code, output = _cli(workspace, "enable", "tally", "--unset", "sync_stage", "--no-input")
    assert code == 1 and "did you mean 'sync_stages'?" in output, output


def test_unknown_ids_and_commands_get_a_suggestion(tmp_path: Path) -> None:
    workspace = workspace_with(tmp_path, [entry("tally", "counter")])
    code, output = _cli(workspace, "disable", "taly")
    assert code == 1 and "did you mean 'tally'?" in output, output
    code, output = _cli(workspace, "enable", "countre", "--no-input")
    assert code == 1 and "did you mean 'counter'?" in output, output
    result = CliRunner().invoke(main, ["statsu"])
    assert result.exit_code == 2 and "did you mean 'status'?" in result.output, result.output


def test_validate_json_reports_problems_and_unknown_settings_keys(tmp_path: Path) -> None:
    # probe's schema ignores extra keys: a misspelt one would silently do nothing
    workspace = workspace_with(tmp_path, [entry("p", tool_nmae="lookup")])
    code, output = _cli(workspace, "validate", "--json")
    assert code == 0, output
    report = json.loads(output)
    assert report["ok"] is True and report["problems"] == []
    assert any("tool_nmae" in w and "did you mean 'tool_name'?" in w for w in report["warnings"])

    (workspace / ".scout" / "settings.json").write_text('{"plugins": [{"instanceId": 1}]}')
    code, output = _cli(workspace, "validate", "--json")
    assert code == 1
    report = json.loads(output)
    assert report["ok"] is False and any("instanceId" in p for p in report["problems"])


def test_a_settings_key_the_plugin_ignores_shows_in_status_and_the_log(tmp_path: Path) -> None:
    workspace = workspace_with(tmp_path, [entry("p", tool_nmae="lookup")])
    with running(workspace) as engine:
        status = eventually(lambda: engine.status(), 20, what="status.json")
        (instance,) = status["instances"]
        assert instance["state"] == "loaded"
        assert instance["ignoredSettings"] == ["tool_nmae"]
        engine.wait_for_log("instance p: plugin probe has no setting 'tool_nmae': ignored")


def test_a_secret_for_a_misspelt_instance_gets_a_suggestion(tmp_path: Path) -> None:
    workspace = workspace_with(tmp_path, [entry("anthropic", "probe")])
    result = CliRunner().invoke(
        main, ["secrets", "set", "anthropc", "apiKey", "-w", str(workspace)], input="k3y-value\n"
    )
    assert result.exit_code == 0, result.output
    assert "has no instance 'anthropc' (yet); did you mean 'anthropic'?" in result.output


def test_an_agent_model_that_is_not_a_model_is_named_so_in_the_apology(tmp_path: Path) -> None:
    workspace = workspace_with(
        tmp_path,
        [entry("console", "console"), entry("echo", "echo")],
        agent={"inference": "console"},
    )
    engine = EngineProcess(workspace, stdin_text="hi\n")
    try:
        engine.wait_for_log("bot> Sorry")
        assert "'console' is not an inference provider" in engine.output, engine.output
    finally:
        engine.stop()
