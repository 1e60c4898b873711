"""Fixtures for the built-in plugins: an engine whose catalog holds builtin_plugins/, and helpers
to load an instance through settings and secrets exactly as a user would."""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from grambot import ChatMessage, InferenceRequest, ToolDefinition
from grambot.core.instance import InstanceState
from grambot.engine import Engine
from grambot.events.event import PluginEvent
from tests.helpers import Workspace, entry

# Values the SDKs would pick up from the environment if a plugin let them; tests set them to
# prove the instance's own secrets and settings win.
POISON = "poison-from-the-environment"

# A tool the model providers' tests offer to the model.
WEATHER = ToolDefinition(
    name="weather",
    description="Weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def ask(text: str, **kwargs: Any) -> InferenceRequest:
    """A one-message conversation for a model provider."""
    return InferenceRequest(messages=[ChatMessage("user", text)], **kwargs)


class Harness:
    """One workspace + engine; `load` writes settings.json and secrets, then reconciles."""

    def __init__(self, engine: Engine, workspace: Workspace) -> None:
        self.engine = engine
        self.workspace = workspace
        self.events: list[PluginEvent] = []
        self._entries: dict[str, dict[str, Any]] = {}
        engine.event_engine.register(None, self.events.append)

    def secret(self, instance_id: str, key: str, value: str) -> None:
        self.engine.secrets.set(instance_id, key, value)

    async def load(
        self,
        instance_id: str,
        plugin_id: str,
        *,
        secrets: dict[str, str] | None = None,
        **settings: Any,
    ) -> InstanceState | None:
        for key, value in (secrets or {}).items():
            self.secret(instance_id, key, value)
        self._entries[instance_id] = entry(instance_id, plugin_id, **settings)
        await self.apply()
        return self.engine.state_of(instance_id)

    async def remove(self, instance_id: str) -> None:
        self._entries.pop(instance_id, None)
        await self.apply()

    async def apply(self) -> None:
        await self.engine.apply(self.workspace.write(list(self._entries.values())))

    def failure(self, instance_id: str) -> str:
        record = self.engine.instance(instance_id)
        assert record is not None
        return record.failure.message if record.failure else ""

    def loaded(self, instance_id: str) -> bool:
        return self.engine.state_of(instance_id) is InstanceState.LOADED

    async def load_service(
        self, instance_id: str, plugin_id: str, registry: str, api_key: str, **settings: Any
    ) -> Any:
        """Load a built-in that calls a service (its `apiKey` a secret; one retry and a 2 s
        timeout unless `settings` say otherwise) and return what it put in `registry`."""
        settings = {"maxRetries": 1, "timeout": 2.0, **settings}
        await self.load(instance_id, plugin_id, secrets={"apiKey": api_key}, **settings)
        assert self.loaded(instance_id), self.failure(instance_id)
        found = getattr(self.engine.registries, registry).get(instance_id)
        assert found is not None
        return found

    def of_type(self, event_type: str) -> list[PluginEvent]:
        return [e for e in self.events if e.type == event_type]


def make_engine(root: Path) -> Engine:
    """An engine whose catalog holds the repository's builtin_plugins/, with no bot attached:
    these tests watch the plugins alone."""
    return Engine(root, entry_points=False)


@pytest.fixture
async def harness(workspace: Workspace) -> AsyncIterator[Harness]:
    engine = make_engine(workspace.root)
    await engine.event_engine.start()
    try:
        yield Harness(engine, workspace)
    finally:
        await engine.stop(drain_deadline=1.0)


@pytest.fixture
def poisoned_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every credential/base-URL variable the SDKs read, set to a value that must not be used."""
    for name in (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
    ):
        monkeypatch.setenv(name, POISON)
    monkeypatch.setenv("ANTHROPIC_PROFILE", "poison")
    yield POISON


BUILTIN_DIR = Path(__file__).resolve().parents[2] / "builtin_plugins"


def load_plugin_module(plugin_folder: str, module: str) -> ModuleType:
    """A stand-alone helper module of a built-in (one without relative imports), for unit tests.

    Loaded under a private name from its file: plugin folders never go on sys.path.
    """
    path = BUILTIN_DIR / plugin_folder / f"{module}.py"
    spec = importlib.util.spec_from_file_location(f"_builtin_test_{plugin_folder}_{module}", path)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def closed_port_url() -> str:
    """An http://127.0.0.1 URL nothing listens on (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
