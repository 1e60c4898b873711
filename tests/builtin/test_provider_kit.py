"""The SDK built-ins on grambot.kit: the settings users write keep their camelCase keys and
defaults, whatever base model declares them; and the page-long provider docs/plugins.md shows
works against the fake OpenAI server as written."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from grambot import ChatMessage, InferenceRequest, ServiceError
from grambot.config.catalog import PluginCatalog
from grambot.containment.loader import PluginNamespace
from grambot.contract.entry import read_definition
from grambot.testing import running_instance
from tests.builtin.conftest import BUILTIN_DIR, POISON
from tests.fakes.openai_api import FakeOpenAI

REPO = BUILTIN_DIR.parent
KEY = "sk-local-test-key-0123456789"

OPENAI_CONNECTION = {
    "baseUrl": "https://api.openai.com/v1",
    "organization": None,
    "project": None,
    "connectTimeout": 10.0,
    "maxRetries": 2,
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "anthropic": {
        "model": "claude-sonnet-4-6",
        "models": [],
        "label": "Anthropic Claude",
        "baseUrl": "https://api.anthropic.com",
        "maxTokens": 4096,
        "temperature": None,
        "timeout": 120.0,
        "connectTimeout": 10.0,
        "maxRetries": 2,
        "deadline": 300.0,
    },
    "openai-codex": {
        **OPENAI_CONNECTION,
        "api": "responses",
        "model": "gpt-5.1-codex",
        "models": [],
        "label": "OpenAI Codex",
        "maxTokens": 4096,
        "reasoningEffort": None,
        "timeout": 120.0,
        "deadline": 300.0,
    },
    "gpt-image": {
        **OPENAI_CONNECTION,
        "model": "gpt-image-1",
        "size": "1024x1024",
        "quality": "auto",
        "outputFormat": "png",
        "background": None,
        "maxCount": 4,
        "timeout": 180.0,
        "deadline": 600.0,
    },
    "nanobanana": {
        "model": "gemini-2.5-flash-image",
        "baseUrl": "https://generativelanguage.googleapis.com/v1beta",
        "endpoint": None,
        "aspectRatio": None,
        "responseModalities": ["TEXT", "IMAGE"],
        "maxCount": 4,
        "timeout": 120.0,
        "maxRetries": 2,
        "maxRetryAfter": 30.0,
    },
}
# (key, a value the schema refuses) for the connection settings the kit declares
REFUSED = [("timeout", 0), ("maxRetries", 11), ("maxRetries", -1), ("baseUrl", None)]


def schema_of(plugin_id: str) -> type[BaseModel]:
    catalog = PluginCatalog.discover(builtin_dir=BUILTIN_DIR, plugin_dirs=[], entry_points=False)
    descriptor = catalog.get(plugin_id)
    assert descriptor is not None
    namespace = PluginNamespace(f"kit-{plugin_id}", descriptor.folder)
    try:
        return read_definition(namespace.import_entry(descriptor.entry_path)).settings_schema
    finally:
        namespace.unload()


@pytest.mark.parametrize("plugin_id", sorted(DEFAULTS))
def test_the_settings_keys_and_defaults_stay_as_users_write_them(plugin_id: str) -> None:
    schema = schema_of(plugin_id)
    assert schema().model_dump(by_alias=True, mode="json") == DEFAULTS[plugin_id]
    camel = {key: value for key, value in DEFAULTS[plugin_id].items() if value is not None}
    given = schema.model_validate(camel)
    assert given.model_dump(by_alias=True, mode="json") == DEFAULTS[plugin_id]
    for key, value in REFUSED:
        with pytest.raises(ValueError, match=key):
            schema.model_validate({key: value})
    with pytest.raises(ValueError, match="xtra"):
        schema.model_validate({"base_url_typo": "x"})
    assert schema.model_config.get("frozen") is True


def page_provider(folder: Path) -> Path:
    """The provider of docs/plugins.md ("Writing a provider on grambot.kit"), as a plugin."""
    page = (REPO / "docs" / "plugins.md").read_text()
    section = page.split("## Writing a provider on grambot.kit", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    folder.mkdir()
    (folder / "plugin.py").write_text(code[1])
    descriptor = {"id": "local-chat", "name": "Local chat", "description": "doc example"}
    (folder / "plugin.json").write_text(json.dumps({**descriptor, "entry": "plugin.py"}))
    return folder


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(KEY) as server:
        yield server


async def test_the_documented_page_is_a_working_provider(
    tmp_path: Path, fake: FakeOpenAI, poisoned_env: str
) -> None:
    plugin = page_provider(tmp_path / "local-chat")
    settings = {"baseUrl": f"{fake.url}/v1", "maxRetries": 0}
    async with running_instance(plugin, settings, secrets={"apiKey": KEY}) as engine:
        provider = engine.registries.inference.get("local-chat")
        assert provider is not None and provider.label == "Local model"
        answer = await provider.complete(InferenceRequest(messages=[ChatMessage("user", "hi")]))
        assert (answer.text, answer.stop_reason, answer.usage.input_tokens) == (
            "echo: hi",
            "stop",
            21,
        )
        assert fake.bodies[-1]["model"] == "local-model"
        checked = await engine.check("local-chat")
        assert checked.ok and "2 model(s)" in checked.message, checked
        fake.fail(401, message=f"bad key {KEY}")
        with pytest.raises(ServiceError) as caught:
            await provider.complete(InferenceRequest(messages=[ChatMessage("user", "again")]))
    error = caught.value
    assert (error.kind, error.service, error.status) == ("auth", "local chat", 401)
    assert KEY not in str(error) and "grambot secrets set local-chat apiKey" in str(error)
    assert POISON not in str(error)


async def test_the_page_without_its_sdk_names_the_plugin_and_the_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = page_provider(tmp_path / "local-chat")
    monkeypatch.setitem(sys.modules, "openai", None)  # type: ignore[arg-type]
    async with running_instance(plugin, secrets={"apiKey": KEY}) as engine:
        record = engine.instance("local-chat")
        assert record is not None and record.failure is not None
    assert record.failure.kind == "missing-dependency"
    assert "plugin 'local-chat' needs the 'openai' package" in record.failure.message
    assert "pip install 'grambot[openai]'" in record.failure.message
