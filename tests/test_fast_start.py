"""Fast start: the quick commands never import an inference or chat SDK (checked in a fresh
interpreter through sys.modules), and `--help` not even pydantic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runproc import workspace_with

SDKS = ("anthropic", "openai", "telegram", "httpx2")

PROBE = """
import json, sys
sys.argv = ["grambot", *json.loads(sys.argv[1])]
from grambot.cli import main
try:
    main()
except SystemExit:
    pass
print("MODULES=" + json.dumps(sorted(m.split(".")[0] for m in sys.modules)))
"""


def _modules(*args: str) -> set[str]:
    run = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(list(args))],
        capture_output=True,
        text=True,
        timeout=50,
    )
    line = next((x for x in run.stdout.splitlines() if x.startswith("MODULES=")), None)
    assert line is not None, run.stdout + run.stderr
    return set(json.loads(line.removeprefix("MODULES=")))


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return workspace_with(tmp_path, [{"instanceId": "m", "pluginId": "marker"}])


@pytest.mark.parametrize(
    "args", [["status"], ["plugins"], ["validate"], ["secrets", "list"]], ids=lambda a: a[0]
)
def test_quick_commands_import_no_sdk(ws: Path, args: list[str]) -> None:
    modules = _modules(*args, "--workspace", str(ws))
    assert not modules & set(SDKS), modules & set(SDKS)
    assert "grambot" in modules


def test_help_imports_neither_sdks_nor_pydantic() -> None:
    modules = _modules("--help")
    assert not modules & {*SDKS, "pydantic", "asyncio", "watchfiles", "keyring", "filelock"}


def test_status_imports_no_pydantic(ws: Path) -> None:
    assert "pydantic" not in _modules("status", "--workspace", str(ws))
