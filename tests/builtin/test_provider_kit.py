"""The SDK built-ins on grambot.kit: the settings users write keep their camelCase keys and
defaults, whatever base model declares them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from grambot.config.catalog import PluginCatalog
from grambot.containment.loader import PluginNamespace
from grambot.contract.definition import read_definition
from tests.builtin.conftest import BUILTIN_DIR

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
