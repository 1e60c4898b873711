"""Reading `.scout/settings.json`: validate at the boundary (pydantic), then freeze.

File-level problems (unreadable, not JSON, wrong shape, no `plugins` list, bad engine keys:
`pluginDirs`, `timeouts`, `retry`, `agent` with the instances it names) raise `SettingsError`
listing every problem of the file at once, entries included: such an edit is not applied at
all. Entry-level problems do not raise: the entry is left out, reported in `problems`, and its
id (when readable) lands in `held` so the engine keeps that instance as it was.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from grambot.config.names import ID_RULE, entry_path, is_valid_id, json_path
from grambot.errors import Problem, SettingsError, UnsafeFile
from grambot.files import describe_size, read_regular
from grambot.retry import RetryPolicy, retry_policy_from

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "AgentSettings",
    "EngineSettings",
    "InstanceConfig",
    "Timeouts",
    "empty_settings",
    "freeze",
    "load_settings",
    "parse_agent",
    "parse_settings",
    "read_settings_bytes",
    "settings_path",
    "thaw",
]

MAX_FILE_BYTES = 5 * 1024 * 1024
MIN_DEADLINE_SECONDS = 0.01  # a deadline under 10 ms cannot be kept (timer and GIL granularity)
MAX_DEPTH = 100
MIN_MEMORY_MB = 32  # below this not even the interpreter of a child fits (docs/isolation.md)
MIN_PROCESSES = 4  # the child itself and the threads of its sync stages count (docs/isolation.md)


@dataclass(frozen=True)
class InstanceConfig:
    instance_id: str
    plugin_id: str
    enabled: bool
    settings: dict[str, Any]
    json_path: str
    settings_version: int = 1  # `settingsVersion`: the plugin's settings version it was written for
    # Process isolation (docs/isolation.md): the entry's own `isolation` (None: not said), the
    # file's `isolation.default` in force for it, and the entry's limits (None: the manifest's
    # or the default). Part of what the instance is made of: a change reloads it.
    isolation: Literal["inprocess", "process"] | None = None
    isolation_default: Literal["inprocess", "process"] = "inprocess"
    memory_mb: int | None = None
    sandbox: Literal["required", "best-effort"] | None = None
    cpu_seconds: float | None = None
    max_processes: int | None = None

    @property
    def isolation_spec(self) -> tuple[object, ...]:
        """What of the entry decides how it is isolated (compared to know if it changed;
        grambot.core.plan compares the fields it reads first: a field read here goes there)."""
        mode = self.isolation or self.isolation_default
        limits = (self.memory_mb, self.cpu_seconds, self.max_processes)
        return (mode, self.isolation is None, *limits, self.sandbox)


@dataclass(frozen=True)
class Timeouts:
    """Stage deadlines in seconds, all > 0, and the engine-wide plugin override.

    `override_ms` (`timeouts.overrideMs`), when set, is the deadline of every stage, tool
    execution and execute run of every plugin, over any manifest's `timeoutMs`.
    """

    create: float = 30.0
    load: float = 30.0
    unload: float = 10.0
    event_handler: float = 30.0
    override_ms: int | None = None


DEFAULT_SYSTEM_PROMPT = "You are grambot, a helpful assistant in a chat. Answer briefly."


class AgentSettings(BaseModel):
    """`"agent": {"inference": "anthropic", "model": null, ...}`: which inference instance
    answers the bot's chats, and within what limits (all keys optional)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    inference: str | None = Field(
        None, description="Instance id of the inference provider; default: the first registered."
    )
    model: str | None = Field(None, description="Model name passed to the provider.")
    system_prompt: str = Field(DEFAULT_SYSTEM_PROMPT, alias="systemPrompt")
    tools: tuple[str, ...] | None = Field(
        None, description="Tool names the model may call; default: every registered tool."
    )
    image_provider: str | None = Field(
        None, alias="imageProvider", description="Instance id for /image; default: the first."
    )
    max_tool_steps: int = Field(5, alias="maxToolSteps", ge=0, le=50)
    max_history: int = Field(40, alias="maxHistory", ge=2, le=1000)
    reply_timeout: float = Field(
        120.0, alias="replyTimeoutSeconds", ge=MIN_DEADLINE_SECONDS, allow_inf_nan=False
    )
    # -- durable state and bot hygiene (issue 16, issue 13 item 3; docs/state.md) --
    max_history_chars: int = Field(
        200_000, alias="maxHistoryChars", ge=1000, description="Characters of history sent."
    )
    max_tool_result_chars: int = Field(
        16_000, alias="maxToolResultChars", ge=100, description="A tool result is cut past this."
    )
    history_days: float | None = Field(
        None, alias="historyDays", gt=0, description="Forget messages older than this (days)."
    )
    chat_idle_seconds: float = Field(
        600.0, alias="chatIdleSeconds", gt=0, description="An idle chat's worker ends after this."
    )
    time_zone: str = Field("UTC", alias="timeZone", description="Default zone of the chats.")

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from grambot.config.timezone import zone

        zone(value)
        return value


@dataclass(frozen=True)
class EngineSettings:
    path: Path
    workspace: Path
    instances: tuple[InstanceConfig, ...]
    plugin_dirs: tuple[Path, ...]
    timeouts: Timeouts
    raw: Mapping[str, Any]
    problems: tuple[Problem, ...] = ()
    # instance id -> the problems of its entry: whatever runs under that id keeps running
    held: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # JSON paths of invalid entries whose instanceId cannot be read: any running instance
    # missing from the file may be one of them, so none is removed until they are fixed
    unidentified: tuple[str, ...] = ()
    agent: AgentSettings = field(default_factory=lambda: AgentSettings.model_validate({}))
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    state_synchronous: Literal["normal", "full"] = "normal"  # `state.synchronous`

    @property
    def held_instance_ids(self) -> frozenset[str]:
        return frozenset(self.held)

    def instance(self, instance_id: str) -> InstanceConfig | None:
        """The valid instance with exactly this id, or None."""
        return next((i for i in self.instances if i.instance_id == instance_id), None)


class PluginEntry(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    instance_id: StrictStr = Field(alias="instanceId")
    plugin_id: StrictStr = Field(alias="pluginId")
    enabled: StrictBool = True
    settings: dict[str, Any] = Field(default_factory=dict)
    settings_version: Annotated[int, Field(ge=1, strict=True)] = Field(
        default=1, alias="settingsVersion"
    )
    isolation: Literal["inprocess", "process"] | None = None
    memory_mb: Annotated[int, Field(ge=MIN_MEMORY_MB, strict=True)] | None = Field(
        default=None, alias="memoryMb"
    )
    sandbox: Literal["required", "best-effort"] | None = None
    cpu_seconds: Annotated[float, Field(gt=0, strict=True)] | None = Field(
        default=None, alias="cpuSeconds"
    )
    max_processes: Annotated[int, Field(ge=MIN_PROCESSES, strict=True)] | None = Field(
        default=None, alias="maxProcesses"
    )

    @field_validator("instance_id", "plugin_id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not is_valid_id(value):
            raise PydanticCustomError("id_pattern", "invalid id")
        return value


def _keepable_seconds(value: float) -> float:
    if value < MIN_DEADLINE_SECONDS:
        raise PydanticCustomError("deadline_too_short", "deadline under 10 ms")
    return value


def _keepable_ms(value: int) -> int:
    if value < MIN_DEADLINE_SECONDS * 1000:
        raise PydanticCustomError("deadline_too_short_ms", "deadline under 10 ms")
    return value


_Seconds = Annotated[
    float, Field(gt=0, strict=True, allow_inf_nan=False), AfterValidator(_keepable_seconds)
]


class TimeoutsModel(BaseModel):
    model_config = ConfigDict(extra="allow")

    create: _Seconds = 30.0
    load: _Seconds = 30.0
    unload: _Seconds = 10.0
    event_handler: _Seconds = Field(default=30.0, alias="eventHandler")
    override_ms: Annotated[int, Field(gt=0, strict=True), AfterValidator(_keepable_ms)] | None = (
        Field(default=None, alias="overrideMs")
    )


class StateSettings(BaseModel):
    """`"state": {"synchronous": "normal"}`: durability of .scout/state.db (docs/state.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    synchronous: Literal["normal", "full"] = "normal"


class IsolationDefaults(BaseModel):
    """`"isolation": {"default": "process"}`: how entries that do not say are isolated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: Literal["inprocess", "process"] = "inprocess"


class EngineKeys(BaseModel):
    model_config = ConfigDict(extra="allow")

    plugin_dirs: list[Annotated[StrictStr, Field(min_length=1)]] = Field(
        default_factory=lambda: ["plugins"], alias="pluginDirs"
    )
    timeouts: TimeoutsModel = TimeoutsModel()
    secrets: dict[str, Any] = Field(default_factory=dict)
    agent: AgentSettings = Field(default_factory=lambda: AgentSettings.model_validate({}))
    state: StateSettings = Field(default_factory=lambda: StateSettings.model_validate({}))
    isolation: IsolationDefaults = Field(
        default_factory=lambda: IsolationDefaults.model_validate({})
    )


_MESSAGES = {
    "missing": "{f} is required",
    "bool_type": "{f} must be true or false",
    "string_type": "{f} must be a string",
    "string_too_short": "{f} must not be empty",
    "dict_type": "{f} must be an object",
    "model_type": "{f} must be an object",
    "model_attributes_type": "{f} must be an object",
    "list_type": "{f} must be a list",
    "float_type": "{f} must be a number",
    "int_type": "{f} must be an integer",
    "greater_than": "{f} must be a number greater than 0",
    "finite_number": "{f} must be a finite number",
    "deadline_too_short": "{f} must be at least 0.01 (seconds): a deadline under 10 ms cannot "
    "be kept",
    "deadline_too_short_ms": "{f} must be at least 10 (ms): a deadline under 10 ms cannot be kept",
    "id_pattern": "{f} " + ID_RULE,
    "extra_forbidden": "{f} is not a known key",
    "literal_error": "{f} must be one of {expected}",
    "greater_than_equal": "{f} must be at least {ge}",
}


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _problem(file: Path | None, prefix: tuple[int | str, ...], err: ErrorDetails) -> Problem:
    loc = tuple(err["loc"])
    named = [i for i, part in enumerate(loc) if isinstance(part, str)]
    name = json_path(loc[named[-1] :]) if named else "each entry of plugins"
    template = _MESSAGES.get(err["type"])
    message = template.replace("{f}", name) if template else str(err["msg"])
    context = err.get("ctx") or {}
    for key in ("expected", "ge"):
        message = message.replace("{" + key + "}", str(context.get(key, "")))
    value = None if err["type"] == "missing" else _short(err["input"])
    return Problem(file, json_path(prefix + loc), message, value)


def _fail(file: Path, message: str, json_path: str = "", value: str | None = None) -> SettingsError:
    return SettingsError([Problem(file, json_path, message, value)])


def _too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in children)
    return False


def freeze(value: Any) -> Any:
    """Deep-freeze JSON data: dict -> MappingProxyType, list -> tuple."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The inverse of `freeze`: plain dicts and lists again (for pydantic, json.dumps)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(v) for v in value]
    return value


def settings_path(workspace: Path) -> Path:
    return workspace / ".scout" / "settings.json"


def empty_settings(workspace: Path) -> EngineSettings:
    return EngineSettings(
        path=settings_path(workspace),
        workspace=workspace,
        instances=(),
        plugin_dirs=(workspace / "plugins",),
        timeouts=Timeouts(),
        raw=MappingProxyType({}),
    )


def load_settings(
    workspace: Path, path: Path | None = None, *, lenient: bool = False
) -> EngineSettings:
    """Read and parse the settings file; a missing file means no instances."""
    path = settings_path(workspace) if path is None else path
    try:
        data = read_settings_bytes(path)
    except FileNotFoundError:
        return replace(empty_settings(workspace), path=path)
    return parse_settings(data, path=path, workspace=workspace, lenient=lenient)


def read_settings_bytes(path: Path) -> bytes:
    """The bytes of a settings file: a regular file of at most MAX_FILE_BYTES (a FIFO or a link
    to /dev/zero is never read). FileNotFoundError when it is missing; SettingsError naming
    the path for anything else that keeps it from being read."""
    try:
        return read_regular(path, MAX_FILE_BYTES)
    except FileNotFoundError:
        raise
    except UnsafeFile as exc:
        raise _fail(path, exc.reason) from None
    except OSError as exc:
        raise _fail(path, f"cannot read file: {exc.strerror or exc}") from None


def _decode(data: bytes | str, path: Path) -> Any:
    if len(data) > MAX_FILE_BYTES:
        raise _fail(path, f"larger than {describe_size(MAX_FILE_BYTES)}; refusing to parse it")
    if isinstance(data, bytes):
        bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
        try:
            data = data[bom:].decode("utf-8")
        except UnicodeDecodeError as exc:
            offset = exc.start + bom
            raise _fail(path, f"file is not valid UTF-8 (bad byte at offset {offset})") from None
    if not data.strip(" \t\r\n"):
        raise _fail(path, "file is empty")
    try:
        parsed = json.loads(data)
    except json.JSONDecodeError as exc:
        msg = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise _fail(path, msg) from None
    except RecursionError:
        raise _fail(path, f"JSON is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # e.g. an integer with too many digits
        raise _fail(path, f"invalid JSON: {exc}") from None
    if _too_deep(parsed):
        raise _fail(path, f"JSON is nested deeper than {MAX_DEPTH} levels")
    return parsed


def parse_agent(raw: Any, file: Path | None = None) -> tuple[AgentSettings, list[Problem]]:
    """The `agent` key validated (the defaults when absent), and its problems."""
    if raw is None:
        return AgentSettings.model_validate({}), []
    try:
        return AgentSettings.model_validate(thaw(raw)), []
    except ValidationError as exc:
        problems = [_problem(file, ("agent",), e) for e in exc.errors()]
        return AgentSettings.model_validate({}), problems


_PLUGINS_MISSING = 'plugins is required: the list of instances (write "plugins": [] for none)'


def _plugins_missing(path: Path, parsed: dict[str, Any]) -> Problem:
    near = [k for k in parsed if isinstance(k, str) and k.lower().rstrip("s") == "plugin"]
    hint = f"; found {near[0]!r}: a misspelling of plugins?" if near else ""
    return Problem(path, "plugins", _PLUGINS_MISSING + hint)


def _agent_references(path: Path, agent: AgentSettings, ids: set[str]) -> list[Problem]:
    """`agent.inference` and `agent.imageProvider` must name an entry of `plugins`."""
    problems = []
    for key, value in (("inference", agent.inference), ("imageProvider", agent.image_provider)):
        if value is not None and value not in ids:
            known = ", ".join(sorted(ids)) or "none"
            message = (
                f"agent.{key} names instance {value!r}, which is not in plugins (instances: "
                f"{known}); removed or renamed? change agent.{key} first "
                f"(grambot agent --set {key}=...)"
            )
            problems.append(Problem(path, f"agent.{key}", message))
    return problems


def parse_settings(
    data: bytes | str, *, path: Path, workspace: Path, lenient: bool = False
) -> EngineSettings:
    """Validate the settings file's content; raise SettingsError on file-level problems (with
    every problem of the file, entries included). `lenient` (for `grambot validate`): bad
    engine keys are reported in `problems` with their defaults in force, so the entries can
    still be checked; a file that is not a JSON object still raises."""
    parsed = _decode(data, path)
    if not isinstance(parsed, dict):
        kind = "a list" if isinstance(parsed, list) else _short(parsed)
        raise _fail(path, f"top level must be a JSON object, not {kind}")
    file_problems: list[Problem] = []
    entries = parsed.get("plugins")
    if entries is None:
        file_problems.append(_plugins_missing(path, parsed))
        entries = []
    elif not isinstance(entries, list):
        file_problems.append(
            Problem(path, "plugins", "plugins must be a list of objects", _short(entries))
        )
        entries = []
    engine = EngineKeys.model_validate({})
    try:
        engine = EngineKeys.model_validate({k: v for k, v in parsed.items() if k != "plugins"})
    except ValidationError as exc:
        file_problems.extend(_problem(path, (), e) for e in exc.errors())
    retry, retry_problems = retry_policy_from(parsed, path)
    file_problems.extend(retry_problems)

    default_mode = engine.isolation.default
    instances, problems, held, ids, unidentified = _entries(path, entries, default_mode)
    file_problems.extend(_agent_references(path, engine.agent, ids))
    if file_problems and not lenient:
        raise SettingsError([*file_problems, *problems])
    problems = [*file_problems, *problems]
    t = engine.timeouts
    return EngineSettings(
        path=path,
        workspace=workspace,
        instances=tuple(instances),
        plugin_dirs=tuple(workspace / d for d in engine.plugin_dirs),
        timeouts=Timeouts(t.create, t.load, t.unload, t.event_handler, t.override_ms),
        raw=freeze(parsed),
        problems=tuple(problems),
        held=held,
        unidentified=unidentified,
        agent=engine.agent,
        retry=retry,
        state_synchronous=engine.state.synchronous,
    )


def _entries(
    path: Path, entries: list[Any], default_mode: Literal["inprocess", "process"] = "inprocess"
) -> tuple[
    list[InstanceConfig], list[Problem], dict[str, tuple[str, ...]], set[str], tuple[str, ...]
]:
    """The valid entries; the problems of the others; the held ids with their problems; every
    readable instance id (valid or not); and the paths of invalid entries without one."""
    instances: list[InstanceConfig] = []
    problems: list[Problem] = []
    held: dict[str, tuple[str, ...]] = {}
    unidentified: list[str] = []
    owners: dict[str, tuple[str, str]] = {}  # lower-case id -> (entry path, id as written)
    for index, entry in enumerate(entries):
        where = entry_path(index)
        found: list[Problem] = []
        model: PluginEntry | None = None
        try:
            model = PluginEntry.model_validate(entry)
        except ValidationError as exc:
            found = [_problem(path, ("plugins", index), e) for e in exc.errors()]
        raw_id = entry.get("instanceId") if isinstance(entry, dict) else None
        iid: str | None = raw_id if is_valid_id(raw_id) else None
        if iid is not None and iid.lower() in owners:
            first_where, first_id = owners[iid.lower()]
            message = (
                f"duplicate instanceId {iid!r} (already used by {first_where} as {first_id!r}; "
                "ids are compared ignoring case)"
            )
            found.append(Problem(path, f"{where}.instanceId", message, _short(iid)))
            iid = None
        elif iid is not None:
            owners[iid.lower()] = (where, iid)
        if found or model is None:
            if iid is None and isinstance(entry, dict) and "instanceId" not in entry:
                near = [k for k in entry if isinstance(k, str) and k.lower() == "instanceid"]
                if near:
                    hint = f"found {near[0]!r}: instanceId is spelt with a capital I, small d"
                    found.append(Problem(path, f"{where}.{near[0]}", hint))
            problems.extend(found)
            if iid is not None:
                held[iid] = tuple(str(p) for p in found)
            elif isinstance(entry, dict):
                unidentified.append(where)
            continue
        instances.append(
            InstanceConfig(
                instance_id=model.instance_id,
                plugin_id=model.plugin_id,
                enabled=model.enabled,
                settings=copy.deepcopy(model.settings),
                json_path=where,
                settings_version=model.settings_version,
                isolation=model.isolation,
                isolation_default=default_mode,
                memory_mb=model.memory_mb,
                sandbox=model.sandbox,
                cpu_seconds=model.cpu_seconds,
                max_processes=model.max_processes,
            )
        )
    readable = {first for _, first in owners.values()}
    return instances, problems, held, readable, tuple(unidentified)
