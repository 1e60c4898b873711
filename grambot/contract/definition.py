"""What an entry module must expose, and how the engine reads it.

The entry module has a module attribute `plugin` with `settings_schema` (a pydantic model class,
optional) and `create(api)` (sync or async) returning an object with optional `load()` /
`unload()` (and `reconfigure(settings) -> bool`). `grambot.Plugin` is a convenient way to write
it; any object with those attributes works, and so does a module that defines `create` (and
`settings_schema`) at top level. Optional hooks (docs/hooks.md): `onboarding(prompt)`,
`check(api)`, and `settings_version` with `migrate(from_version, settings)`. How the engine
reads an entry module (either style) is grambot.contract.entry.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from grambot.errors import MigrationError, SettingsInvalid


class NoSettings(BaseModel):
    """The schema of a plugin that declares none: no keys accepted."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Plugin:
    """`plugin = Plugin(settings_schema=MySettings, create=create)` in an entry module.

    `check(api)` (sync or async): a live test of the credentials and settings, run by
    `grambot check` after `load` (raise to fail; a returned string is shown after "ok").
    `settings_version` (default 1) and `migrate(from_version, settings) -> settings`: entries
    written for an older version are migrated one version at a time, in memory, before their
    settings are validated.
    """

    create: Callable[[Any], Any]
    settings_schema: type[BaseModel] = NoSettings
    onboarding: Callable[..., Any] | None = None
    check: Callable[..., Any] | None = None
    settings_version: int = 1
    migrate: Callable[[int, dict[str, Any]], dict[str, Any]] | None = None


def migrate_settings(
    definition: Plugin, settings: dict[str, Any], version: int, json_path: str
) -> dict[str, Any]:
    """`settings` written for `version`, migrated step by step to `definition.settings_version`
    (a copy; the input is never changed). MigrationError names the entry (`json_path`, e.g.
    `plugins[2]`) and the step."""
    target = definition.settings_version
    where = f"{json_path}.settings"
    if version > target:
        raise MigrationError(
            f"{json_path}.settingsVersion: the entry is for settings version {version}, but "
            f"the plugin knows versions up to {target} (written for a newer plugin?)"
        )
    current = copy.deepcopy(settings)
    for step in range(version, target):
        assert definition.migrate is not None
        try:
            migrated = definition.migrate(step, current)
        except Exception as exc:
            raise MigrationError(
                f"{where}: migrating settings from version {step} to {step + 1} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if not isinstance(migrated, dict):
            raise MigrationError(
                f"{where}: migrate({step}, ...) returned a {type(migrated).__name__}, not a dict"
            )
        current = migrated
    return current


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


def ignored_keys(schema: type[BaseModel] | None, settings: dict[str, Any]) -> list[str]:
    """Keys of `settings` that `schema` does not know and would silently drop (a schema that
    forbids extra keys refuses them instead; one that allows them keeps them)."""
    if schema is None or schema.model_config.get("extra", "ignore") != "ignore":
        return []
    known = set(schema.model_fields)
    known |= {f.alias for f in schema.model_fields.values() if f.alias}
    known |= {
        f.validation_alias
        for f in schema.model_fields.values()
        if isinstance(f.validation_alias, str)
    }
    return [key for key in settings if key not in known]
