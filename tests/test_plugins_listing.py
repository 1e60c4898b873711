"""`grambot plugins`: each plugin with the command that enables it,
the extra a built-in's SDK needs, and settings fields from a cache: a listing from the cache
imports no plugin code and not pydantic (the cost that made it ~300 ms)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import make_plugin

pytestmark = pytest.mark.timeout(60)

BUILTINS = ["anthropic", "brave-search", "console", "echo", "gpt-image", "nanobanana"]
BUILTINS += ["openai-codex", "telegram"]

PROBE = """
import json, sys
for blocked in json.loads(sys.argv[2]):
    sys.modules[blocked] = None  # as if the package were not installed
sys.argv = ["grambot", *json.loads(sys.argv[1])]
from grambot.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
loaded = [m.split(".")[0] for m, v in list(sys.modules.items()) if v is not None]
print("MODULES=" + json.dumps(sorted(loaded)))
"""


def grambot(
    workspace: Path, cache: Path, *args: str, blocked: tuple[str, ...] = ()
) -> tuple[str, set[str]]:
    env = {**os.environ, "GRAMBOT_CACHE_DIR": str(cache)}
    argv = ["plugins", "--workspace", str(workspace), *args]
    run = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(list(blocked))],
        capture_output=True,
        text=True,
        timeout=50,
        env=env,
    )
    out, _, modules = run.stdout.rpartition("MODULES=")
    assert modules, run.stdout + run.stderr
    return out + run.stderr, set(json.loads(modules))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    make_plugin(
        root / "plugins" / "mine",
        {"id": "mine", "entry": "plugin.py"},
        "import os\n"
        "from pydantic import BaseModel\n"
        "from grambot import Plugin\n"
        "with open(os.environ['MINE_LOG'], 'a') as fh:\n"
        "    fh.write('imported\\n')\n"
        "class Settings(BaseModel):\n"
        "    colour: str = 'red'\n"
        "plugin = Plugin(settings_schema=Settings, create=lambda api: object())\n",
    )
    (root / ".scout").mkdir()
    (root / ".scout" / "settings.json").write_text('{"plugins": []}')
    return root


def test_each_plugin_comes_with_the_command_that_enables_it(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINE_LOG", str(tmp_path / "log"))
    out, _ = grambot(workspace, tmp_path / "cache")
    for plugin_id in [*BUILTINS, "mine"]:
        assert f"    enable: grambot enable {plugin_id}\n" in out, out


def test_a_builtin_whose_sdk_is_missing_names_its_extra(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINE_LOG", str(tmp_path / "log"))
    out, modules = grambot(workspace, tmp_path / "cache", "--json", blocked=("anthropic",))
    listing = {p["id"]: p for p in json.loads(out[: out.rindex("}") + 1])["plugins"]}
    assert listing["anthropic"]["install"] == "pip install 'grambot[anthropic]'"
    assert listing["anthropic"]["enable"] == "grambot enable anthropic"
    assert listing["echo"]["install"] is None and listing["mine"]["install"] is None
    assert not modules & {"anthropic", "openai", "telegram", "httpx2"}


def test_a_listing_from_the_cache_imports_no_plugin_and_not_pydantic(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "log"
    monkeypatch.setenv("MINE_LOG", str(log))
    cache = tmp_path / "cache"
    first, _ = grambot(workspace, cache)
    assert "colour: str = 'red'" in first and log.read_text() == "imported\n"
    second, modules = grambot(workspace, cache)
    assert second == first
    assert log.read_text() == "imported\n"  # described from the cache
    assert not modules & {"pydantic", "anthropic", "openai", "telegram", "httpx2"}, modules
    # an edit of the plugin is seen at once
    source = workspace / "plugins" / "mine" / "plugin.py"
    source.write_text(source.read_text().replace("colour: str = 'red'", "colour: str = 'blue'"))
    third, _ = grambot(workspace, cache)
    assert "colour: str = 'blue'" in third and log.read_text() == "imported\nimported\n"


def test_the_cache_can_be_switched_off(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "log"
    monkeypatch.setenv("MINE_LOG", str(log))
    for _ in range(2):
        grambot(workspace, Path("off"))  # GRAMBOT_CACHE_DIR=off
    assert log.read_text() == "imported\nimported\n"
    assert not Path("off").exists()


@pytest.mark.timeout(20)
def test_a_settings_file_that_is_not_regular_is_refused_never_read(tmp_path: Path) -> None:
    """`grambot plugins` reads pluginDirs without grambot.config.settings (quick), but like it
    never opens a FIFO (it would wait forever) or /dev/zero: grambot.config.settings then names
    the file."""
    import grambot.config.settings
    from grambot.cli import plugin_list

    assert plugin_list.SETTINGS_MAX_BYTES == grambot.config.settings.MAX_FILE_BYTES
    (tmp_path / ".scout").mkdir()
    settings = tmp_path / ".scout" / "settings.json"
    os.mkfifo(settings)
    run = subprocess.run(
        [sys.executable, "-m", "grambot", "plugins", "--workspace", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=15,
        env={**os.environ, "GRAMBOT_CACHE_DIR": "off"},
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "not a regular file" in run.stderr and str(settings) in run.stderr
    assert "Traceback" not in run.stderr
