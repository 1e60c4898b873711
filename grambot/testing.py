"""Helpers for testing plugins through the real engine (docs/plugin-packages.md).

    async with running_instance(Path(__file__).parent, {"greeting": "hi"}) as engine:
        assert engine.state_of("myplugin") == "loaded"
        tool = engine.registries.tools.get("hello")

    async with fake_chat(HERE, {"prefix": "hi"}, script=[call("echo", text="ping"), "done"],
                         secrets={"apiKey": "test-key"}) as chat:
        assert await chat.say("use the tool") == "done"
        assert chat.tool_results() == ["hi: ping"]

`plugin` is the plugin's folder (holding plugin.json) or the id of an installed plugin
package (a `grambot.plugins` entry point). Only that plugin is added to the catalog: an
installed package's folder is never searched as a pluginDir, so site-packages is never scanned.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grambot.bot import attach_bot
from grambot.engine import Engine

if TYPE_CHECKING:
    from grambot.registries.inference import InferenceRequest

__all__ = ["FakeChat", "call", "fake_chat", "running_instance"]

FAKE_CHAT_PLUGINS = Path(__file__).parent / "_testing"
FAKE_CHAT_ID = "chat"


def call(tool: str, /, **args: Any) -> dict[str, Any]:
    """A step of a `fake_chat` script: the model calls `tool` with `args`. A list of calls is
    one step calling several tools at once."""
    return {"tool": tool, "args": args}


@asynccontextmanager
async def running_instance(
    plugin: Path | str,
    settings: dict[str, Any] | None = None,
    *,
    instance_id: str | None = None,
    workspace: Path | None = None,
    secrets: Mapping[str, str] | None = None,
) -> AsyncIterator[Engine]:
    """An engine on a temporary workspace running one instance of `plugin` (its folder, or the
    id of an installed plugin package), with `secrets` stored for it beforehand.

    The instance id defaults to the plugin id. Events are handled; everything is unloaded and
    stopped on exit.
    """
    async with _engine(plugin, settings, instance_id, workspace, secrets, None) as (engine, _):
        yield engine


class FakeChat:
    """A chat with the bot, for a test: `say` a line, get the reply; what the scripted model
    was asked and what tools answered are kept."""

    def __init__(self, engine: Engine, instance_id: str) -> None:
        self.engine = engine
        self.instance_id = instance_id  # the plugin under test

    @property
    def _fake(self) -> Any:
        connector = self.engine.registries.connectors.get(FAKE_CHAT_ID)
        if connector is None:
            provider = self.engine.registries.inference.get(FAKE_CHAT_ID)
            if provider is None:
                raise RuntimeError("the fake chat is not loaded")
            return getattr(provider, "wrapped", provider)
        return getattr(connector, "wrapped", connector)

    async def say(
        self, text: str, *, chat_id: str = "test-chat", sender: str = "tester", timeout: float = 10
    ) -> str:
        """Send `text` as a user of the test connector; the bot's reply."""
        import asyncio

        fake = self._fake
        await fake.receive(text, chat_id=chat_id, sender=sender)
        async with asyncio.timeout(timeout):
            reply: str = await fake.replies.get()
        return reply

    @property
    def sent(self) -> list[tuple[str, str]]:
        """Every (chat id, text) the bot sent through the test connector."""
        return [(chat_id, text) for chat_id, text, _ in self._fake.sent]

    @property
    def requests(self) -> list[InferenceRequest]:
        """What the scripted model was asked, in order."""
        return list(self._fake.requests)

    def tool_results(self) -> list[str]:
        """The tool results the model was shown, in order."""
        seen: list[str] = []
        for request in self.requests:
            for message in request.messages:
                if message.role == "tool" and message.content not in seen:
                    seen.append(message.content)
        return seen


@asynccontextmanager
async def fake_chat(
    plugin: Path | str,
    settings: dict[str, Any] | None = None,
    *,
    script: list[Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    instance_id: str | None = None,
    agent: Mapping[str, Any] | None = None,
) -> AsyncIterator[FakeChat]:
    """An engine running `plugin` beside a test connector (`chat.say`) and, when `script` is
    given, a model answering from it (strings are answers, `call(...)` steps tool calls; then
    it repeats the user). Without `script` the plugin under test must be the model."""
    fake = {"script": script, "connector": True}
    async with _engine(plugin, settings, instance_id, None, secrets, (fake, agent)) as found:
        engine, plugin_instance = found
        yield FakeChat(engine, plugin_instance)


@asynccontextmanager
async def _engine(
    plugin: Path | str,
    settings: dict[str, Any] | None,
    instance_id: str | None,
    workspace: Path | None,
    secrets: Mapping[str, str] | None,
    chat: tuple[dict[str, Any], Mapping[str, Any] | None] | None,
) -> AsyncIterator[tuple[Engine, str]]:
    with tempfile.TemporaryDirectory(prefix="grambot-test-") as tmp:
        root = workspace or Path(tmp)
        plugin_id, plugin_dirs, entry_points = _locate(plugin)
        iid = instance_id or plugin_id
        entries = [_entry(iid, plugin_id, settings or {})]
        data: dict[str, Any] = {"pluginDirs": [str(d) for d in plugin_dirs], "plugins": entries}
        if chat is not None:
            fake, agent = chat
            data["pluginDirs"].append(str(FAKE_CHAT_PLUGINS))
            entries.append(_entry(FAKE_CHAT_ID, "grambot-fake-chat", fake))
            inference = FAKE_CHAT_ID if fake["script"] is not None else iid
            data["agent"] = {"inference": inference, **(agent or {})}
        scout = root / ".scout"
        scout.mkdir(parents=True, exist_ok=True)
        (scout / "settings.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
        if secrets:
            from grambot.secrets.store import FileSecretsStore

            store = FileSecretsStore(scout / "secrets.json")
            for key, value in secrets.items():
                store.set(iid, key, value)
        engine = Engine(root, builtin_dir=None, entry_points=entry_points)
        attach_bot(engine)
        await engine.start()
        try:
            yield engine, iid
        finally:
            await engine.stop(drain_deadline=1.0)


def _entry(instance_id: str, plugin_id: str, settings: dict[str, Any]) -> dict[str, Any]:
    return {"instanceId": instance_id, "pluginId": plugin_id, "enabled": True, "settings": settings}


def _locate(plugin: Path | str) -> tuple[str, list[Path], bool]:
    """(plugin id, pluginDirs, whether to read entry points) for a folder or an installed id.

    A folder is its own pluginDir (never its parent: that may be site-packages, holding every
    installed plugin and grambot's built-ins). A folder that is an installed plugin package is
    found through its entry point instead, so that its absolute self-imports stay in the
    instance's namespace, as under `grambot run`."""
    folder = Path(plugin)
    if (folder / "plugin.json").is_file():
        folder = folder.resolve()
        plugin_id = json.loads((folder / "plugin.json").read_text("utf-8"))["id"]
        installed = _installed_ids()
        if installed.get(plugin_id) == folder:
            return plugin_id, [], True
        return plugin_id, [folder], False
    if isinstance(plugin, str) and plugin in _installed_ids():
        return plugin, [], True
    raise ValueError(
        f"{plugin!r} is neither a plugin folder (holding plugin.json) nor the id of an "
        f"installed plugin package (installed: {', '.join(sorted(_installed_ids())) or 'none'})"
    )


def _installed_ids() -> dict[str, Path]:
    """Installed plugin packages: id -> folder (from the entry points; nothing imported)."""
    from grambot.config.catalog import PluginCatalog

    catalog = PluginCatalog.discover(builtin_dir=None, plugin_dirs=[], entry_points=True)
    return {d.id: d.folder for d in catalog.descriptors()}
