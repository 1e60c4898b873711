"""Reading a plugin without running it: its definition (entry module imported into a
throwaway namespace, no `create`, no `load`) and a description of its settings fields.

Used by `grambot plugins`, `enable` and `validate`. Entry modules import their SDKs inside
`create`/`load` (DESIGN §2), so this stays fast.
"""

from __future__ import annotations

import itertools
import types
import typing
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from grambot.config.catalog import PluginCatalog, builtin_plugins_dir
from grambot.config.descriptor import PluginDescriptor
from grambot.config.settings import EngineSettings
from grambot.containment.loader import PluginNamespace
from grambot.contract.definition import Plugin
from grambot.contract.entry import read_definition
from grambot.errors import DefinitionError, PluginUnreadable

__all__ = [
    "FieldInfo",
    "PluginUnreadable",
    "catalog_for",
    "describe_fields",
    "read_plugin",
    "text_fields",
]

_probe_ids = itertools.count(1)


@dataclass(frozen=True)
class FieldInfo:
    name: str
    type: str
    required: bool
    default: str | None
    description: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def catalog_for(settings: EngineSettings, *, entry_points: bool = True) -> PluginCatalog:
    """The catalog `grambot run` would see with these settings."""
    return PluginCatalog.discover(
        builtin_dir=builtin_plugins_dir(),
        plugin_dirs=settings.plugin_dirs,
        entry_points=entry_points,
    )


def read_plugin(descriptor: PluginDescriptor) -> Plugin:
    """Import the entry module in a namespace of its own, read `plugin`, forget the modules."""
    namespace = PluginNamespace(
        f"_probe-{descriptor.id}-{next(_probe_ids)}",
        descriptor.folder,
        package_name=descriptor.package_name,
    )
    try:
        module = namespace.import_entry(descriptor.entry_path)
        return read_definition(module, descriptor.attribute)
    except DefinitionError as exc:
        raise PluginUnreadable(str(exc)) from None
    except Exception as exc:
        raise PluginUnreadable(
            f"{descriptor.entry_path}: cannot import: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        namespace.unload()


def _type_name(annotation: Any) -> str:
    if annotation is None or annotation is type(None):
        return "null"
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{args}]" if args else name
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def describe_fields(schema: type[BaseModel]) -> list[FieldInfo]:
    """The settings fields of a plugin schema, by their JSON names (aliases)."""
    fields = []
    for name, field in schema.model_fields.items():
        required = field.is_required()
        default: str | None = None
        if not required:
            if field.default is not PydanticUndefined:
                default = repr(field.default)
            elif field.default_factory is not None:
                default = "(computed)"
        fields.append(
            FieldInfo(
                name=field.alias or name,
                type=_type_name(field.annotation),
                required=required,
                default=default,
                description=field.description,
            )
        )
    return fields


def _is_text(annotation: Any) -> bool:
    if annotation is str:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_text(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(args) and all(_is_text(a) for a in args)
    return False


def text_fields(schema: type[BaseModel]) -> set[str]:
    """Settings keys (names and aliases) whose type is plain text (`str`, `str | None`)."""
    names: set[str] = set()
    for name, field in schema.model_fields.items():
        if _is_text(field.annotation):
            names.add(name)
            if field.alias:
                names.add(field.alias)
    return names
