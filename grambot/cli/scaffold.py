"""`grambot new PLUGIN_ID --kind ...`: a working plugin folder to start from.

Writes `<first pluginDir>/<id>/plugin.json`, `plugin.py` (a settings schema and one registered
connector, inference provider, tool or image provider) and `test_<id>.py`, which loads the
plugin through the real engine (`grambot.testing.running_instance`).
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

from grambot.config.names import ID_PATTERN, is_valid_id
from grambot.errors import ScaffoldError
from grambot.files import write_atomic

__all__ = ["KINDS", "ScaffoldError", "scaffold"]

KINDS = ("connector", "inference", "tool", "image")


_COMMON_HEAD = '''"""{name}: {description}

Import heavy SDKs inside `create`/`load`, never at the top of this module:
listing and validating plugins imports it.
"""

from __future__ import annotations

{imports}
from pydantic import BaseModel, ConfigDict, Field

from grambot import {names}


'''

_TOOL = """class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ignored

    prefix: str = Field("echo", description="Put before the echoed text.")


class EchoTool:
    name = "{tool_name}"
    description = "Echoes the given text."

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def parameters(self) -> dict[str, Any]:
        text = {{"type": "string"}}
        return {{"type": "object", "properties": {{"text": text}}, "required": ["text"]}}

    async def execute(self, args: dict[str, Any], context: ToolContext) -> ToolResult:
        return ToolResult(text=f"{{self.prefix}}: {{args.get('text', '')}}")


class Instance:
    def __init__(self, api: PluginApi) -> None:
        self.api = api

    async def load(self) -> None:
        settings: Settings = self.api.settings
        self.api.registrar.register_tool(EchoTool(settings.prefix))

    async def unload(self) -> None:
        pass  # the engine removes what load() registered


plugin = Plugin(settings_schema=Settings, create=Instance)
"""

_TOOL_TEST = """        tool = engine.registries.tools.get("{tool_name}")
        assert tool is not None
        result = await tool.execute({{"text": "ping"}}, ToolContext())
        assert result.text == "hi: ping"
"""

_INFERENCE = '''class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ignored

    model: str = Field("echo-1", description="The model answering by default.")


class EchoProvider:
    """Answers with the last user message (replace with a real SDK call)."""

    def __init__(self, instance_id: str, model: str) -> None:
        self.id = instance_id
        self.label = "{name}"
        self.model = model

    def models(self) -> Sequence[str]:
        return [self.model]

    async def complete(self, request: InferenceRequest) -> InferenceResponse:
        last = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        return InferenceResponse(text=last, model=request.model or self.model)


class Instance:
    def __init__(self, api: PluginApi) -> None:
        self.api = api

    async def load(self) -> None:
        settings: Settings = self.api.settings
        # e.g. api_key = self.api.secrets.require("apiKey")
        provider = EchoProvider(self.api.instance.instance_id, settings.model)
        self.api.registrar.register_inference_provider(provider)


plugin = Plugin(settings_schema=Settings, create=Instance)
'''

_INFERENCE_TEST = """        provider = engine.registries.inference.get("{plugin_id}")
        assert provider is not None
        answer = await provider.complete(
            InferenceRequest(messages=[ChatMessage(role="user", content="ping")])
        )
        assert answer.text == "ping" and answer.model == "hi"
"""

_CONNECTOR = '''class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ignored

    sender: str = Field("me", description="Who the messages of this connector come from.")


class Outbox:
    """Keeps what it sends (replace with a real chat transport)."""

    def __init__(self, api: PluginApi) -> None:
        self.api = api
        self.sent: list[tuple[str, str]] = []

    async def start(self) -> None:
        self.api.logger.info("connector started")

    async def stop(self) -> None:
        self.api.logger.info("connector stopped")

    async def send_message(
        self,
        chat_id: str,
        text: str,
        *,
        files: Sequence[Attachment] = (),
        reply_to: str | None = None,
    ) -> None:
        self.sent.append((chat_id, text))

    def receive(self, chat_id: str, text: str) -> None:
        """Hand an incoming message to the bot (a real connector does this when polling)."""
        settings: Settings = self.api.settings
        message = IncomingMessage(
            connector_id=self.api.instance.instance_id,
            chat_id=chat_id,
            sender=settings.sender,
            text=text,
        )
        self.api.events.emit(CONNECTOR_MESSAGE, message)


class Instance:
    def __init__(self, api: PluginApi) -> None:
        self.api = api
        self.connector = Outbox(api)

    async def load(self) -> None:
        # e.g. token = self.api.secrets.require("token")
        # The engine calls start() once everything of this reconcile has loaded, and stop()
        # before unload(): register here, never start yourself.
        self.api.registrar.register_connector(self.connector)


plugin = Plugin(settings_schema=Settings, create=Instance)
'''

_CONNECTOR_TEST = """        connector = engine.registries.connectors.get("{plugin_id}")
        assert connector is not None
        await connector.send_message("chat-1", "ping")
        assert connector.sent == [("chat-1", "ping")]
"""

_IMAGE = '''class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not ignored

    size: str = Field("64x64", description="Default image size.")


class BlankImages:
    """Writes blank PPM images (replace with a real image API)."""

    def __init__(self, api: PluginApi) -> None:
        self.api = api
        self.id = api.instance.instance_id

    async def generate(
        self, prompt: str, *, size: str | None = None, count: int = 1, model: str | None = None
    ) -> Sequence[GeneratedImage]:
        settings: Settings = self.api.settings
        width, _, height = (size or settings.size).partition("x")
        images = []
        for n in range(count):
            path = self.api.data_dir / f"image-{{n}}.ppm"
            pixels = b"\\0" * 3 * int(width) * int(height)
            path.write_bytes(f"P6 {{width}} {{height}} 255\\n".encode() + pixels)
            images.append(GeneratedImage(path, "image/x-portable-pixmap", path.stat().st_size))
        return images


class Instance:
    def __init__(self, api: PluginApi) -> None:
        self.api = api

    async def load(self) -> None:
        self.api.registrar.register_image_provider(BlankImages(self.api))


plugin = Plugin(settings_schema=Settings, create=Instance)
'''

_IMAGE_TEST = """        provider = engine.registries.images.get("{plugin_id}")
        assert provider is not None
        (image,) = await provider.generate("a cat", size="2x2")
        assert image.path.exists() and image.size_bytes > 0
"""

_PLUGIN_LINE = "\n\nplugin = Plugin(settings_schema=Settings, create=Instance)\n"
_WITH_CHECK = '''

async def check(api: PluginApi) -> str:
    """`grambot check <instance>`: a cheap live request that proves the credentials and
    settings work (raise, e.g. grambot.ServiceError(kind="auth"), when they do not)."""
    # e.g. token = api.secrets.require("token"), then ask the service one cheap question
    return "nothing to check yet"


plugin = Plugin(settings_schema=Settings, create=Instance, check=check)
'''

_KINDS: dict[str, tuple[str, str, str, str, str]] = {
    # kind: (imports, extra grambot names, body, test body, test imports / settings)
    "tool": (
        "from typing import Any\n",
        ", ToolContext, ToolResult",
        _TOOL,
        _TOOL_TEST,
        'ToolContext|{"prefix": "hi"}',
    ),
    "inference": (
        "from collections.abc import Sequence\n",
        ", InferenceRequest, InferenceResponse",
        _INFERENCE,
        _INFERENCE_TEST,
        'ChatMessage, InferenceRequest|{"model": "hi"}',
    ),
    "connector": (
        "from collections.abc import Sequence\n",
        ", CONNECTOR_MESSAGE, Attachment, IncomingMessage",
        _CONNECTOR,
        _CONNECTOR_TEST,
        '|{"sender": "tester"}',
    ),
    "image": (
        "from collections.abc import Sequence\n",
        ", GeneratedImage",
        _IMAGE,
        _IMAGE_TEST,
        '|{"size": "4x4"}',
    ),
}

# A second test, through the bot (grambot.testing.fake_chat), for the kinds a chat shows.
_CHAT_TESTS: dict[str, tuple[str, str]] = {
    # kind: (grambot.testing names, the test)
    "tool": (
        "call, fake_chat",
        '''

def test_the_bot_calls_{ident}() -> None:
    """A scripted model asks for the tool; the bot runs it and shows the model its result."""

    async def scenario() -> None:
        script = [call("{tool_name}", text="ping"), "done"]
        async with fake_chat(PLUGIN, {settings}, script=script) as chat:
            assert await chat.say("use the tool") == "done"
            assert chat.tool_results() == ["hi: ping"]

    asyncio.run(scenario())
''',
    ),
    "inference": (
        "fake_chat",
        '''

def test_the_bot_answers_with_{ident}() -> None:
    """With no script, the plugin under test is the bot's model."""

    async def scenario() -> None:
        async with fake_chat(PLUGIN, {settings}) as chat:
            assert await chat.say("ping") == "ping"

    asyncio.run(scenario())
''',
    ),
}

_TEST = '''"""Tests of the {plugin_id} plugin: `python -m pytest {folder}`."""

from __future__ import annotations

import asyncio
{path_import}
{test_imports}from grambot.testing import {testing_names}

{head}

def test_{ident}_loads_and_works() -> None:
    async def scenario() -> None:
        async with running_instance(PLUGIN, {settings}) as engine:
            instance = engine.instance("{plugin_id}")
            assert instance is not None and instance.state == "loaded", instance
            checked = await engine.check("{plugin_id}")
            assert checked.ok, checked
{test_body}

    asyncio.run(scenario())
{chat_test}'''


def _write(path: Path, text: str) -> None:
    # A new file in a new folder: the mode a plain open() gives, no fsync (nothing to lose yet).
    write_atomic(path, text, mode=None, fsync=False)


def _check(plugin_id: str, kind: str) -> None:
    if kind not in KINDS:
        raise ScaffoldError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    if not is_valid_id(plugin_id):
        raise ScaffoldError(f"plugin id {plugin_id!r} must match {ID_PATTERN}")


def _sources(
    plugin_id: str, kind: str, name: str | None, test_head: str, test_folder: str
) -> tuple[dict[str, object], str, str, str]:
    """(plugin.json, plugin.py, the test's name, the test) of a new plugin."""
    ident = re.sub(r"\W", "_", plugin_id)
    title = name or plugin_id.replace("-", " ").replace("_", " ").title()
    description = f"An {kind} plugin." if kind[0] in "aeiou" else f"A {kind} plugin."
    imports, extra_names, body, test_body, test_spec = _KINDS[kind]
    test_names, _, settings = test_spec.partition("|")
    tool_name = ident.lower()
    descriptor: dict[str, object] = {
        "id": plugin_id,
        "name": title,
        "description": description,
        "entry": "plugin.py",
        "version": "0.1.0",
    }
    names = ["Plugin", "PluginApi", *(n.strip() for n in extra_names.split(",") if n.strip())]
    names.sort(key=lambda n: (not n.isupper(), n))
    source = _COMMON_HEAD.format(
        name=title, description=description, imports=imports, names=", ".join(names)
    ) + body.format(name=title, tool_name=tool_name, plugin_id=plugin_id).replace(
        _PLUGIN_LINE, _WITH_CHECK
    )
    test_imports = f"from grambot import {test_names}\n" if test_names else ""
    chat_names, chat_test = _CHAT_TESTS.get(kind, ("", ""))
    test = _TEST.format(
        testing_names=", ".join(filter(None, [chat_names, "running_instance"])),
        chat_test=chat_test.format(ident=ident, tool_name=tool_name, settings=settings),
        plugin_id=plugin_id,
        folder=test_folder,
        head=test_head,
        path_import="from pathlib import Path\n" if "Path(" in test_head else "",
        test_imports=test_imports,
        ident=ident,
        settings=settings,
        test_body=textwrap.indent(
            test_body.format(plugin_id=plugin_id, tool_name=tool_name), "    "
        ).rstrip("\n"),
    )
    return descriptor, source, f"test_{ident}.py", test


def scaffold(plugin_dir: Path, plugin_id: str, kind: str, *, name: str | None = None) -> Path:
    """Create the plugin folder `plugin_dir/plugin_id`; returns it. ScaffoldError if taken."""
    _check(plugin_id, kind)
    folder = plugin_dir / plugin_id
    if folder.exists():
        raise ScaffoldError(f"{folder} already exists; choose another id or remove it")
    descriptor, source, test_name, test = _sources(
        plugin_id, kind, name, "HERE = Path(__file__).parent\n", str(folder)
    )
    folder.mkdir(parents=True)
    _write(folder / "plugin.json", json.dumps(descriptor, indent=2) + "\n")
    _write(folder / "plugin.py", source)
    _write(folder / test_name, test.replace("(PLUGIN,", "(HERE,"))
    return folder


_PYPROJECT = """[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "{description}"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["grambot>={grambot_version}"]

[project.optional-dependencies]
test = ["pytest>=8"]

# How grambot finds the plugin: the entry point names the package that holds plugin.json.
[project.entry-points."grambot.plugins"]
{plugin_id} = "{package}"

[tool.setuptools.packages.find]
where = ["src"]

# plugin.json is package data: without this line the installed package has no plugin.json.
[tool.setuptools.package-data]
{package} = ["plugin.json"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

_README = """# {dist}

{description} A [grambot](https://pypi.org/project/grambot/) plugin, installable with pip.

```bash
pip install -e .                 # or: pip install {dist}
grambot plugins                  # lists `{plugin_id}` (source: entry-point)
grambot enable {plugin_id}
python -m pytest                 # its test loads it through the real engine
```

While you edit it, `grambot run --reload-plugins` reloads its instances when a file of
`src/{package}/` changes (an editable install is followed to its source folder).
"""


def scaffold_package(parent: Path, plugin_id: str, kind: str, *, name: str | None = None) -> Path:
    """Create `parent/grambot-<id>/`: an installable package of the plugin (src layout,
    plugin.json as package data, the `grambot.plugins` entry point, a test); returns it."""
    import grambot

    _check(plugin_id, kind)
    ident = re.sub(r"\W", "_", plugin_id).lower()
    dist = f"grambot-{plugin_id.lower().replace('_', '-')}"
    package = f"grambot_{ident}"
    root = parent / dist
    if root.exists():
        raise ScaffoldError(f"{root} already exists; choose another id or remove it")
    descriptor, source, test_name, test = _sources(
        plugin_id,
        kind,
        name,
        f'PLUGIN = "{plugin_id}"  # installed: found by its entry point\n',
        str(root),
    )
    folder = root / "src" / package
    folder.mkdir(parents=True)
    (root / "tests").mkdir()
    description = str(descriptor["description"])
    _write(
        root / "pyproject.toml",
        _PYPROJECT.format(
            dist=dist,
            description=description,
            grambot_version=grambot.__version__,
            plugin_id=plugin_id,
            package=package,
        ),
    )
    _write(
        root / "README.md",
        _README.format(dist=dist, description=description, plugin_id=plugin_id, package=package),
    )
    _write(folder / "__init__.py", f'"""The {plugin_id} grambot plugin."""\n')
    _write(folder / "plugin.json", json.dumps(descriptor, indent=2) + "\n")
    _write(folder / "plugin.py", source)
    _write(root / "tests" / test_name, test)
    return root
