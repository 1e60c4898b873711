"""Plugins as packages: both entry-point forms, grambot.testing on an installed
package (no site-packages scan, no bogus "defined twice"), secrets injection and the fake chat,
and `--reload-plugins` following an editable install to its source folder."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from grambot import ToolContext
from grambot.config.catalog import PluginCatalog
from grambot.core.instance import InstanceState
from grambot.engine import Engine
from grambot.testing import call, fake_chat, running_instance
from tests.runproc import EngineProcess, workspace_with

pytestmark = pytest.mark.timeout(60)

TOOL_PLUGIN = """
from pydantic import BaseModel
from grambot import Plugin, ToolResult
from {self_import} import WORD

class Settings(BaseModel):
    prefix: str = "{prefix}"

class Tool:
    name = "{tool}"
    description = "says a word"
    def __init__(self, api):
        self.api = api
    def parameters(self):
        return {{"type": "object", "properties": {{"text": {{"type": "string"}}}}}}
    async def execute(self, args, context):
        key = self.api.secrets.get("apiKey") or "-"
        said = (self.api.settings.prefix, WORD, args.get("text"), key)
        return ToolResult(text=" ".join(said))

class Instance:
    def __init__(self, api):
        self.api = api
    async def load(self):
        self.api.registrar.register_tool(Tool(self.api))

{name} = Plugin(settings_schema=Settings, create=Instance)
"""


def make_package(
    site: Path,
    package: str,
    entry_points: str,
    *,
    descriptor: dict[str, str] | None = None,
    name: str = "plugin",
    tool: str = "word",
    prefix: str = "said",
    dist: str | None = None,
    direct_url: dict[str, object] | None = None,
    src: Path | None = None,
) -> Path:
    """An installed distribution in `site` (its package in `src`, default `site`)."""
    folder = (src or site) / package
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    (folder / "words.py").write_text('WORD = "tick"\n')
    source = TOOL_PLUGIN.format(self_import=f"{package}.words", name=name, tool=tool, prefix=prefix)
    (folder / "plugin.py").write_text(textwrap.dedent(source))
    if descriptor is not None:
        (folder / "plugin.json").write_text(json.dumps(descriptor))
    dist = dist or package
    info = site / f"{dist}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\nSummary: Says words.\n"
    )
    (info / "entry_points.txt").write_text(f"[grambot.plugins]\n{entry_points}\n")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))
    return folder


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    return site


def test_a_module_object_entry_point_needs_no_plugin_json(site: Path) -> None:
    make_package(site, "clockpkg", "clock = clockpkg.plugin:clock_plugin", name="clock_plugin")
    catalog = PluginCatalog.discover(builtin_dir=None, plugin_dirs=[])
    descriptor = catalog.get("clock")
    assert descriptor is not None, catalog.problems
    assert (descriptor.source, descriptor.version) == ("entry-point", "1.2.3")
    assert descriptor.description == "Says words."
    assert descriptor.package_name == "clockpkg"
    assert "clockpkg" not in sys.modules  # located, never imported


async def test_a_module_object_plugin_loads_with_its_self_imports_namespaced(
    site: Path, tmp_path: Path
) -> None:
    make_package(site, "clockpkg", "clock = clockpkg.plugin:clock_plugin", name="clock_plugin")
    root = workspace_with(tmp_path / "ws", [{"instanceId": "c", "pluginId": "clock"}])
    engine = Engine(root, builtin_dir=None)
    await engine.start()
    try:
        assert engine.state_of("c") is InstanceState.LOADED, engine.instance("c")
        tool = engine.registries.tools.get("word")
        assert tool is not None
        assert (await tool.execute({"text": "x"}, ToolContext())).text == "said tick x -"
        assert "clockpkg" not in sys.modules and "clockpkg.words" not in sys.modules
    finally:
        await engine.stop(drain_deadline=1.0)


async def test_an_entry_point_naming_a_missing_object_fails_naming_it(
    site: Path, tmp_path: Path
) -> None:
    make_package(site, "clockpkg", "clock = clockpkg.plugin:nothing_here")
    root = workspace_with(tmp_path / "ws", [{"instanceId": "c", "pluginId": "clock"}])
    engine = Engine(root, builtin_dir=None)
    await engine.start()
    try:
        record = engine.instance("c")
        assert record is not None and record.failure is not None
        assert record.failure.kind == "invalid-plugin"
        assert "nothing_here" in record.failure.message
    finally:
        await engine.stop(drain_deadline=1.0)


async def test_running_instance_on_an_installed_package_reports_no_bogus_problems(
    site: Path,
) -> None:
    folder = make_package(
        site,
        "weatherpkg",
        "weather = weatherpkg",
        descriptor={"id": "weather", "name": "Weather", "entry": "plugin.py"},
    )
    # what else lies in site-packages: more plugin folders, a duplicate id, a broken one
    make_package(
        site, "otherpkg", "other = otherpkg", descriptor={"id": "other", "entry": "plugin.py"}
    )
    (site / "copy").mkdir()  # a plain folder: a pluginDir scan of site-packages would see it
    (site / "copy" / "plugin.json").write_text('{"id": "weather", "entry": "plugin.py"}')
    (site / "copy" / "plugin.py").write_text("")
    (site / "broken").mkdir()
    (site / "broken" / "plugin.json").write_text("{")
    for plugin in (folder, "weather"):
        async with running_instance(plugin, {"prefix": "p"}, secrets={"apiKey": "s3"}) as engine:
            problems = [str(p) for p in engine.catalog.problems]
            assert not [p for p in problems if "defined twice" in p or "broken" in p], problems
            assert engine.state_of("weather") is InstanceState.LOADED
            tool = engine.registries.tools.get("word")
            assert tool is not None
            assert (await tool.execute({"text": "x"}, ToolContext())).text == "p tick x s3"
            assert "weatherpkg.words" not in sys.modules  # its self-import stayed namespaced


async def test_running_instance_on_a_folder_reads_that_folder_only(tmp_path: Path) -> None:
    parent = tmp_path / "many"
    for name in ("one", "two"):
        folder = parent / name
        folder.mkdir(parents=True)
        (folder / "plugin.json").write_text(json.dumps({"id": "same", "entry": "plugin.py"}))
        (folder / "plugin.py").write_text(
            "from grambot import Plugin\nplugin = Plugin(create=lambda api: object())\n"
        )
    async with running_instance(parent / "one") as engine:
        assert engine.state_of("same") is InstanceState.LOADED
        assert engine.catalog.problems == []


def _tool_folder(root: Path) -> Path:
    folder = root / "greeter"
    folder.mkdir(parents=True)
    (folder / "plugin.json").write_text(json.dumps({"id": "greeter", "entry": "plugin.py"}))
    (folder / "words.py").write_text('WORD = "hello"\n')
    source = TOOL_PLUGIN.format(self_import=".words", name="plugin", tool="greet", prefix="I say")
    (folder / "plugin.py").write_text(textwrap.dedent(source))
    return folder


async def test_fake_chat_drives_a_tool_through_the_bot_in_a_few_lines(tmp_path: Path) -> None:
    folder = _tool_folder(tmp_path)
    script = [call("greet", text="Ada"), "done"]
    async with fake_chat(folder, script=script, secrets={"apiKey": "k1"}) as chat:
        assert await chat.say("greet Ada") == "done"
        assert chat.tool_results() == ["I say hello Ada k1"]
        assert chat.requests[0].messages[-1].content == "greet Ada"
        assert "greet" in [t.name for t in chat.requests[0].tools]
        assert await chat.say("and now?") == "and now?"  # the script ran out: it echoes


CONNECTOR_PLUGIN = """
from grambot import IncomingMessage, Plugin

class Conn:
    def __init__(self, api):
        self.api = api
        self.sent = []
    async def start(self): pass
    async def stop(self): pass
    async def send_message(self, chat_id, text, *, files=(), reply_to=None):
        self.sent.append((chat_id, text))
    async def receive(self, text):
        await self.api.inbox.accept(IncomingMessage(
            connector_id=self.api.instance.instance_id, chat_id="c1", sender="u",
            text=text, message_id=text))
    async def load(self):
        self.api.registrar.register_connector(self)

plugin = Plugin(create=Conn)
"""


async def test_fake_chat_answers_what_a_connector_under_test_delivers(tmp_path: Path) -> None:
    folder = tmp_path / "conn"
    folder.mkdir()
    (folder / "plugin.json").write_text(json.dumps({"id": "conn", "entry": "plugin.py"}))
    (folder / "plugin.py").write_text(CONNECTOR_PLUGIN)
    async with fake_chat(folder, script=["pong"]) as chat:
        connector = chat.engine.registries.connectors.get("conn")
        assert connector is not None
        await connector.wrapped.receive("ping")
        for _ in range(500):
            if connector.sent:
                break
            await __import__("asyncio").sleep(0.01)
        assert connector.sent == [("c1", "pong")]


@pytest.mark.timeout(90)
def test_reload_plugins_follows_an_editable_install_to_its_source(tmp_path: Path) -> None:
    site, source = tmp_path / "site", tmp_path / "project"
    folder = make_package(
        site,
        "editpkg",
        "editplug = editpkg",
        descriptor={"id": "editplug", "entry": "plugin.py"},
        src=source / "src",
        direct_url={"url": (source).as_uri(), "dir_info": {"editable": True}},
    )
    root = workspace_with(tmp_path / "ws", [{"instanceId": "e", "pluginId": "editplug"}])
    settings = json.loads((root / ".scout" / "settings.json").read_text())
    settings["pluginDirs"] = []
    (root / ".scout" / "settings.json").write_text(json.dumps(settings))
    pythonpath = f"{site}:{source / 'src'}"
    engine = EngineProcess(root, "--reload-plugins", env={"PYTHONPATH": pythonpath})
    try:
        engine.wait_states({"e": "loaded"})
        plugin = folder / "plugin.py"
        plugin.write_text(plugin.read_text().replace('"said"', '"edited"'))
        engine.wait_for_log("plugin editplug changed: reloading e", timeout=15)
        engine.wait_states({"e": "loaded"})
    finally:
        engine.stop()
