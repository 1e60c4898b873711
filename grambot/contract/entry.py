"""How the engine reads an entry module: the `Plugin` it defines (grambot.contract.definition),
or, for an execute-style module, the `Plugin` whose instances run its `execute`
(grambot.contract.execute)."""

from __future__ import annotations

from types import ModuleType

from pydantic import BaseModel

from grambot.contract.definition import NoSettings, Plugin
from grambot.contract.execute import execute_plugin_definition
from grambot.errors import DefinitionError

__all__ = ["read_definition"]


def read_definition(module: ModuleType, attribute: str = "plugin") -> Plugin:
    """The plugin the entry module defines: its `plugin` (or the module itself, when it has
    none), or the object named by a `module:object` entry point (`attribute`)."""
    if attribute == "plugin":
        source = getattr(module, "plugin", module)
    else:
        source = module
        for name in attribute.split("."):
            if not hasattr(source, name):
                raise DefinitionError(
                    f"{module.__file__}: has no `{attribute}`, which its entry point names "
                    "as the plugin"
                )
            source = getattr(source, name)
    create = getattr(source, "create", None)
    if not callable(create) and callable(getattr(source, "execute", None)):
        # An execute-style (Summit) plugin: its instances are tools named after them.
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
    version = getattr(source, "settings_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DefinitionError(
            f"{module.__file__}: `settings_version` must be an integer ≥ 1, got {version!r}"
        )
    migrate = getattr(source, "migrate", None)
    if version > 1 and not callable(migrate):
        raise DefinitionError(
            f"{module.__file__}: `settings_version` is {version} but there is no callable "
            "`migrate(from_version, settings)` to bring older entries up to it"
        )
    return Plugin(
        create=create,
        settings_schema=schema,
        onboarding=getattr(source, "onboarding", None),
        check=getattr(source, "check", None),
        settings_version=version,
        migrate=migrate,
    )
