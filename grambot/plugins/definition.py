"""What an entry module must expose, and how the engine reads it.

The entry module has a module attribute `plugin` with `settings_schema` (a pydantic model class,
optional) and `create(api)` (sync or async) returning an object with optional `load()` /
`unload()`. `grambot.Plugin` is a convenient way to write it; any object with those attributes
works, and so does a module that defines `create` (and `settings_schema`) at top level.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class NoSettings(BaseModel):
    """The schema of a plugin that declares none: no keys accepted."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Plugin:
    """`plugin = Plugin(settings_schema=MySettings, create=create)` in an entry module."""

    create: Callable[[Any], Any]
    settings_schema: type[BaseModel] = NoSettings
    onboarding: Callable[..., Any] | None = None


class DefinitionError(Exception):
    """The entry module does not expose a usable plugin (message says what is missing)."""


def read_definition(module: ModuleType) -> Plugin:
    source = getattr(module, "plugin", module)
    create = getattr(source, "create", None)
    if not callable(create) and callable(getattr(source, "execute", None)):
        # An execute-style (Summit) plugin: its instances are tools named after them.
        from grambot.plugins.execute import execute_plugin_definition

        return execute_plugin_definition(module)
    if not callable(create):
        raise DefinitionError(
            f"{module.__file__}: the entry module must define `plugin` with a callable "
            "`create(api)` (e.g. `plugin = grambot.Plugin(create=create, settings_schema=...)`), "
            "or an execute-style `async def execute(inputs, context, config)`"
        )
    schema = getattr(source, "settings_schema", None) or NoSettings
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise DefinitionError(
            f"{module.__file__}: `settings_schema` must be a pydantic model class, got {schema!r}"
        )
    return Plugin(
        create=create, settings_schema=schema, onboarding=getattr(source, "onboarding", None)
    )


def validate_settings(schema: type[BaseModel], settings: dict[str, Any], where: str) -> Any:
    """Validate an instance's settings; errors name `where` (e.g. `plugins[2].settings`)."""
    try:
        return schema.model_validate(settings)
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False):
            path = where + "".join(
                f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]
            )
            value = repr(error.get("input"))
            if len(value) > 80:
                value = value[:77] + "..."
            lines.append(f"{path}: {error['msg']} (got {value})")
        raise SettingsInvalid("; ".join(lines)) from None


class SettingsInvalid(Exception):
    """Instance settings failed the plugin's schema; the message lists each path."""
