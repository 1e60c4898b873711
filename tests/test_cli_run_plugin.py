"""`grambot run-plugin` as a real subprocess, on the shipped rest-api-sample."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.rest_api import FakeRestApi, fake_rest_api

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_PLUGINS = REPO / "plugins"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A workspace whose pluginDirs is the example workspace's `plugins` folder."""
    (tmp_path / ".scout").mkdir()
    (tmp_path / ".scout" / "settings.json").write_text(
        json.dumps({"pluginDirs": [str(EXAMPLE_PLUGINS)], "plugins": []})
    )
    return tmp_path


def run_plugin(
    workspace: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SAMPLE_REST_API")}
    return subprocess.run(
        [sys.executable, "-m", "grambot", "run-plugin", *args, "--workspace", str(workspace)],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=30,
    )


def run_sample(
    workspace: Path, server: FakeRestApi, inputs: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """The rest-api-sample on `inputs`, pointed at the fake REST API; it must exit 0."""
    done = run_plugin(
        workspace,
        "rest-api-sample",
        "--input",
        inputs,
        *args,
        env={"SAMPLE_REST_API_URL": server.url, **env},
    )
    assert done.returncode == 0, done.stderr
    return done


def test_sample_without_a_token(workspace: Path) -> None:
    with fake_rest_api() as server:
        done = run_sample(workspace, server, '{"resource": "posts", "id": 1}')
    assert json.loads(done.stdout) == {
        "status": 200,
        "url": f"{server.url}/posts/1",
        "data": {"id": 1, "title": "first"},
    }
    assert server.requests == [("/posts/1", None)]


def test_sample_with_a_token_and_config(workspace: Path) -> None:
    with fake_rest_api() as server:
        done = run_sample(
            workspace,
            server,
            '{"resource": "whoami"}',
            "--config",
            '{"tenant": "alpha"}',
            SAMPLE_REST_API_TOKEN="tok-1234",
        )
    result = json.loads(done.stdout)
    assert result["status"] == 200 and result["url"] == f"{server.url}/whoami"
    assert result["data"] == {"authorization": "Bearer tok-1234"}


def test_sample_http_error_status_is_a_result_not_a_failure(workspace: Path) -> None:
    with fake_rest_api() as server:
        done = run_sample(workspace, server, '{"resource": "posts", "id": 404}')
    assert json.loads(done.stdout)["status"] == 404


def test_failures_exit_1_with_the_error(workspace: Path) -> None:
    bad_input = run_plugin(workspace, "rest-api-sample", "--input", '{"id": 1}')
    assert bad_input.returncode == 1 and bad_input.stdout == ""
    assert "error: " in bad_input.stderr and "inputs.resource" in bad_input.stderr

    unknown = run_plugin(workspace, "no-such-plugin")
    assert unknown.returncode == 1
    assert "no plugin with id 'no-such-plugin'" in unknown.stderr
    assert "rest-api-sample" in unknown.stderr  # the known plugins are listed

    not_json = run_plugin(workspace, "rest-api-sample", "--input", "{resource")
    assert not_json.returncode == 2 and "--input" in not_json.stderr


def test_a_bad_manifest_is_reported_with_file_and_field(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    bad = plugins / "broken" / "plugin.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps({"name": "broken", "entry": "index.py", "timeoutMs": -1}))
    (bad.parent / "index.py").write_text("async def execute(i, c, k):\n    return 1\n")
    (tmp_path / ".scout").mkdir()
    done = run_plugin(tmp_path, "broken")
    assert done.returncode == 1
    assert f"{bad.resolve()}: timeoutMs: " in done.stderr and "(got -1)" in done.stderr


def test_timeout_override_on_the_command_line(tmp_path: Path) -> None:
    folder = tmp_path / "plugins" / "sleepy"
    folder.mkdir(parents=True)
    (folder / "plugin.json").write_text(
        json.dumps({"name": "sleepy", "entry": "index.py", "timeoutMs": 20000})
    )
    (folder / "index.py").write_text(
        "import asyncio\nasync def execute(i, c, k):\n    await asyncio.sleep(60)\n"
    )
    done = run_plugin(tmp_path, "sleepy", "--timeout-ms", "150")
    assert done.returncode == 1
    assert "execute timed out after 150 ms" in done.stderr
