"""plugin.json: parse, validate and freeze one plugin descriptor.

`load_descriptor` reads a plugin.json, validates it with a strict pydantic model, checks that
its `entry` stays inside the plugin folder, and returns a frozen `PluginDescriptor`. Every
problem found is reported at once in a `DescriptorError`, each naming its file and JSON path.
"""

from __future__ import annotations

import errno
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from grambot.config.identity import PluginIdentity
from grambot.config.names import ID_PATTERN, is_valid_id, json_path
from grambot.errors import DescriptorError, Problem, UnsafeFile
from grambot.files import read_regular

__all__ = [
    "DESCRIPTOR_NAME",
    "PLUGIN_ID_PATTERN",
    "SOURCES",
    "PluginDescriptor",
    "load_descriptor",
]

PLUGIN_ID_PATTERN = ID_PATTERN  # the one id rule (grambot.config.names), named for plugin.json
DESCRIPTOR_NAME = "plugin.json"
MAX_DESCRIPTOR_BYTES = 1024 * 1024  # a bigger plugin.json is refused, never read
MIN_TIMEOUT_MS = 10  # a deadline under 10 ms cannot be kept (timer and GIL granularity)


def _keepable_ms(value: int) -> int:
    if value < MIN_TIMEOUT_MS:
        raise PydanticCustomError(
            "deadline_too_short",
            "must be at least 10 (ms): a deadline under 10 ms cannot be kept",
        )
    return value


SOURCES = ("builtin", "pluginDir", "entry-point", "custom")

_PluginId = Annotated[str, StringConstraints(pattern=PLUGIN_ID_PATTERN)]
_MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _env_name(value: str) -> str:
    if not value or "=" in value or "\0" in value:
        raise ValueError("must be an environment variable name (non-empty, no '=' or NUL)")
    return value


def _module_name(value: str) -> str:
    if _MODULE_RE.fullmatch(value) is None:
        raise ValueError("must be a module name such as 'httpx' or 'json'")
    return value


def _vault_prefix(value: str) -> str:
    parts = value.rstrip("/").split("/")
    if value.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(
            "must be a vault path prefix such as 'shared/notes/' (no leading '/', no empty, "
            "'.' or '..' segments)"
        )
    return value


_EnvName = Annotated[str, AfterValidator(_env_name)]
_ModuleName = Annotated[str, AfterValidator(_module_name)]
_VaultPrefix = Annotated[str, AfterValidator(_vault_prefix)]


@dataclass(frozen=True, kw_only=True)
class PluginDescriptor(PluginIdentity):
    """A validated plugin.json; paths are resolved and the entry is known to be safe."""

    package_name: str | None = None
    attribute: str = "plugin"  # the entry module's object that is the plugin (issue 14)
    version: str | None = None
    timeout_ms: int | None = None
    allowed_env: tuple[str, ...] = ()
    allowed_modules: tuple[str, ...] | None = None
    allowed_vault_paths: tuple[str, ...] = ()
    cache_key_prefix: str | None = None
    # docs/isolation.md: "process" refuses to run in process; limits for a process instance
    isolation: str | None = None
    memory_mb: int | None = None
    sandbox: str | None = None
    cpu_seconds: float | None = None
    max_processes: int | None = None
    stdin: bool = False  # it reads the engine's stdin (a console): an isolated child gets it
    raw: Mapping[str, Any]


class _DescriptorModel(BaseModel):
    """The JSON shape of plugin.json (camelCase keys, strict types, unknown keys kept)."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    id: _PluginId | None = None
    name: str | None = None
    description: str | None = None
    entry: Annotated[str, StringConstraints(min_length=1)]
    version: str | None = None
    timeout_ms: Annotated[int, Field(gt=0), AfterValidator(_keepable_ms)] | None = Field(
        default=None, alias="timeoutMs"
    )
    allowed_env: list[_EnvName] = Field(default_factory=list, alias="allowedEnv")
    allowed_modules: list[_ModuleName] | None = Field(default=None, alias="allowedModules")
    allowed_vault_paths: list[_VaultPrefix] = Field(default_factory=list, alias="allowedVaultPaths")
    cache_key_prefix: Annotated[str, StringConstraints(min_length=1)] | None = Field(
        default=None, alias="cacheKeyPrefix"
    )
    isolation: Literal["inprocess", "process"] | None = None
    memory_mb: Annotated[int, Field(ge=32)] | None = Field(default=None, alias="memoryMb")
    sandbox: Literal["required", "best-effort"] | None = None
    cpu_seconds: Annotated[float, Field(gt=0)] | None = Field(default=None, alias="cpuSeconds")
    max_processes: Annotated[int, Field(ge=4)] | None = Field(default=None, alias="maxProcesses")
    stdin: bool = False


def load_descriptor(
    path: Path, *, source: str, package_name: str | None = None
) -> PluginDescriptor:
    """Read and validate the plugin.json at `path`; `DescriptorError` lists every problem."""
    if source not in SOURCES:
        raise ValueError(f"unknown plugin source {source!r}; expected one of {', '.join(SOURCES)}")
    path = Path(path)
    data = _read_json(path)
    problems: list[Problem] = []
    model: _DescriptorModel | None = None
    try:
        model = _DescriptorModel.model_validate(data)
    except ValidationError as exc:
        problems.extend(_problems_from(path, exc, data))

    plugin_id = model.id if model is not None else None
    if model is not None and plugin_id is None:
        # Summit-style manifest: no `id`, the `name` is the id.
        if model.name is None:
            problems.append(Problem(path, "id", "is required (or give a `name` usable as id)"))
        elif not is_valid_id(model.name):
            problems.append(
                Problem(
                    path,
                    "name",
                    f"is used as the plugin id (no `id` given) and must match {PLUGIN_ID_PATTERN}",
                    repr(model.name),
                )
            )
        else:
            plugin_id = model.name

    folder = path.parent.resolve()
    entry = data.get("entry")
    entry_path: Path | None = None
    if isinstance(entry, str) and entry:
        entry_path = _check_entry(path, folder, entry, problems)

    if problems:
        raise DescriptorError(problems)
    assert model is not None and plugin_id is not None and entry_path is not None
    return PluginDescriptor(
        id=plugin_id,
        name=model.name if model.name is not None else plugin_id,
        description=model.description or "",
        entry=model.entry,
        folder=folder,
        entry_path=entry_path,
        descriptor_path=folder / path.name,
        source=source,
        package_name=package_name,
        version=model.version,
        timeout_ms=model.timeout_ms,
        allowed_env=tuple(model.allowed_env),
        allowed_modules=None if model.allowed_modules is None else tuple(model.allowed_modules),
        allowed_vault_paths=tuple(model.allowed_vault_paths),
        cache_key_prefix=model.cache_key_prefix,
        isolation=model.isolation,
        memory_mb=model.memory_mb,
        sandbox=model.sandbox,
        cpu_seconds=model.cpu_seconds,
        max_processes=model.max_processes,
        stdin=model.stdin,
        raw=_freeze(data),
    )


def _read_json(path: Path) -> dict[str, Any]:
    """The top-level JSON object of `path`, or `DescriptorError` saying why it is not one."""
    try:
        blob = read_regular(path, MAX_DESCRIPTOR_BYTES)
    except UnsafeFile as exc:
        raise DescriptorError([Problem(path, "", exc.reason)]) from None
    except OSError as exc:
        raise DescriptorError(
            [Problem(path, "", f"cannot be read: {exc.strerror or exc}")]
        ) from exc
    try:
        text = blob.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DescriptorError(
            [Problem(path, "", f"is not UTF-8 text (bad byte at offset {exc.start})")]
        ) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        raise DescriptorError([Problem(path, "", message)]) from exc
    except RecursionError:
        raise DescriptorError([Problem(path, "", _TOO_DEEP)]) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise DescriptorError([Problem(path, "", f"is not valid JSON: {exc}")]) from None
    if not isinstance(data, dict):
        raise DescriptorError([Problem(path, "", "must be a JSON object", type(data).__name__)])
    if _depth_exceeds(data, MAX_DEPTH):  # freezing and validating recurse per level
        raise DescriptorError([Problem(path, "", _TOO_DEEP)])
    return data


MAX_DEPTH = 100
_TOO_DEEP = f"is nested deeper than {MAX_DEPTH} levels"


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def _check_entry(path: Path, folder: Path, entry: str, problems: list[Problem]) -> Path | None:
    """Resolve `entry` inside `folder`; append problems and return None if it is unusable."""
    if PurePosixPath(entry).is_absolute() or PureWindowsPath(entry).is_absolute():
        problems.append(
            Problem(path, "entry", "must be relative to the plugin folder", repr(entry))
        )
        return None
    try:
        resolved = _resolve(folder / entry)
    except (OSError, ValueError, RuntimeError) as exc:  # a NUL byte; a symlink loop
        problems.append(Problem(path, "entry", f"cannot be resolved: {exc}", repr(entry)))
        return None
    if not resolved.is_relative_to(folder):
        problems.append(
            Problem(
                path,
                "entry",
                f"entry {entry!r} resolves to {resolved}, outside the plugin folder {folder}",
            )
        )
        return None
    if resolved.suffix != ".py":
        problems.append(Problem(path, "entry", "must name a .py file", repr(entry)))
        return None
    try:
        is_file = resolved.is_file()
    except OSError as exc:  # e.g. a name too long for the file system
        problems.append(Problem(path, "entry", f"cannot be read: {exc.strerror}", repr(entry)))
        return None
    if not is_file:
        exists = resolved.exists()
        what = "is not a regular file" if exists else "does not exist"
        problems.append(Problem(path, "entry", f"entry file {resolved} {what}", repr(entry)))
        return None
    return resolved


def _resolve(path: Path) -> Path:
    """`path.resolve()`, raising RuntimeError for a symlink loop on every Python version.

    Non-strict `resolve()` raises RuntimeError("Symlink loop from ...") on 3.11 and 3.12, but
    from 3.13 on returns the looping path as it is, which would then be reported as missing.
    """
    try:
        resolved = path.resolve()
    except RuntimeError:  # 3.11, 3.12
        raise RuntimeError(f"symlink loop in {path}") from None
    try:
        resolved.stat()
    except OSError as exc:  # a missing file, a name too long: left to the caller's checks
        if exc.errno == errno.ELOOP:  # 3.13 and later
            raise RuntimeError(f"symlink loop in {path}") from None
    return resolved


def _problems_from(path: Path, exc: ValidationError, data: Mapping[str, Any]) -> list[Problem]:
    """One `Problem` per pydantic error, located by its camelCase JSON path."""
    problems = []
    for error in exc.errors(include_url=False):
        where = json_path(error["loc"])
        value = None if error["type"] == "missing" else _short_repr(error.get("input"))
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "string_pattern_mismatch" and where == "id":
            message = f"must match {PLUGIN_ID_PATTERN}"
        problems.append(Problem(path, where, message, value))
    return problems


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _freeze(value: Any) -> Any:
    """A deep read-only copy of parsed JSON: dicts become mapping proxies, lists tuples."""
    if isinstance(value, dict):
        return MappingProxyType({key: _freeze(item) for key, item in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(item) for item in value)
    return value
