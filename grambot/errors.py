"""grambot's exceptions: one hierarchy, each carrying the culprit it is about.

    GrambotError
    ├── SettingsError            settings.json cannot be used (file-level problem)
    ├── DescriptorError          a plugin.json is invalid or its entry escapes its folder
    ├── CatalogError             two plugins share one id
    ├── PluginNotFound           an instance names a plugin the catalog does not have
    ├── PluginLoadError          import, settings validation, create or load failed
    │   └── StageTimeout         a plugin stage ran past its deadline
    ├── NotReady                 raised by a plugin: not ready yet, retry with backoff
    ├── SetupError               raised by a plugin: cannot work as configured, do not retry
    │   └── MissingDependency    a module the plugin needs is not installed (names the fix)
    ├── RegistrationError        a registration was refused
    │   └── RegistrationConflict another instance owns that key
    ├── PluginCrash              plugin code raised a BaseException (SystemExit,
    │                            KeyboardInterrupt, GeneratorExit, a CancelledError the engine
    │                            did not ask for), kept as an ordinary exception
    ├── CallCancelled            a call into an instance ended because it unloaded meanwhile
    │   └── ProcessLost          ... because its process ended (process isolation)
    ├── IsolatedFailure          a process-isolated instance failed, with its reason (crashed,
    │                            killed, memory-limit, unresponsive, sandbox-unavailable, ...)
    ├── SecretsError             the secrets store cannot be read or written
    │   └── MissingSecret        a required secret is not set
    ├── AccessDenied             a plugin asked for an env variable or a vault path its
    │                            manifest does not allow
    ├── UnsafeFile               a file grambot reads is not a regular file (a FIFO, a device,
    │                            a socket) or is larger than its cap: never read
    ├── LockBusy                 a lock file stayed held by another process past the wait
    ├── ServiceError             an outside service a plugin wraps failed; `kind` says how
    ├── EditRefused              a CLI edit would make settings.json invalid; nothing written
    ├── EngineLocked             another engine runs in this workspace
    └── StateError               the state database cannot be used
        └── SchemaTooNew         ... it was written by a newer grambot

A module import refused by a manifest's `allowedModules` raises `PluginImportDenied`, an
`ImportError` (what importing code expects), not a GrambotError.

Signals that never leave grambot's own code are plain Exceptions, below the hierarchy, each
under a comment naming the module that raises it: a plugin's definition or settings that do not
pass (DefinitionError, MigrationError, SettingsInvalid, classified into an instance's reason),
the pipe and zygote of process isolation (ChildEnded, FrameTooLarge, RemoteError,
ZygoteError, SandboxRefused, LandlockError), a turn step that failed (TurnFailed), a control
request left unanswered (NoAnswer), kit.http's HttpFailure, and the CLI's PluginUnreadable and
ScaffoldError. Private signals used inside one function stay there.

Every error names what it is about (file, JSON path, instance, plugin, value) in its message,
and keeps those names as attributes so callers never have to parse the text.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final


class GrambotError(Exception):
    """Base class of every error grambot raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file: where it is, what value, and what is wrong."""

    file: Path | None
    json_path: str
    message: str
    value: str | None = None

    def __str__(self) -> str:
        where = str(self.file) if self.file is not None else "<input>"
        if self.json_path:
            where = f"{where}: {self.json_path}"
        text = f"{where}: {self.message}"
        if self.value is not None:
            text = f"{text} (got {self.value})"
        return text


def object_at(
    settings: Mapping[str, Any], key: str, file: Path | None = None
) -> tuple[Mapping[str, Any], list[Problem]]:
    """The object under an engine key of a settings file: {} when the key is absent, and {}
    with the problem when it holds something else (the caller then uses its defaults)."""
    raw = settings.get(key)
    if raw is None:
        return {}, []
    if not isinstance(raw, Mapping):
        return {}, [Problem(file, key, f"{key} must be an object", repr(raw))]
    return raw, []


class _ProblemsError(GrambotError):
    """An error made of one or more located problems."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class SettingsError(_ProblemsError):
    """settings.json (or another engine file) cannot be used as a whole."""


class DescriptorError(_ProblemsError):
    """A plugin.json descriptor is invalid."""


class CatalogError(_ProblemsError):
    """The plugin catalog has conflicting plugins (e.g. two with one id)."""


class PluginNotFound(GrambotError):
    """An instance refers to a plugin id the catalog does not know."""

    def __init__(
        self, plugin_id: str, instance_id: str | None = None, known: list[str] | None = None
    ):
        self.plugin_id = plugin_id
        self.instance_id = instance_id
        who = f"instance {instance_id!r}: " if instance_id else ""
        hint = f"; known plugins: {', '.join(sorted(known))}" if known else ""
        super().__init__(f"{who}no plugin with id {plugin_id!r}{hint}")


class PluginLoadError(GrambotError):
    """A stage of loading an instance failed; `stage` names which one."""

    def __init__(self, instance_id: str, stage: str, message: str) -> None:
        self.instance_id = instance_id
        self.stage = stage
        super().__init__(f"instance {instance_id!r}: {stage} failed: {message}")


class StageTimeout(PluginLoadError):
    """A plugin stage ran past its deadline and was abandoned."""

    def __init__(
        self, instance_id: str, stage: str, seconds: float, *, ms: int | None = None
    ) -> None:
        self.seconds = seconds
        self.ms = ms  # set when the deadline came from a millisecond value (timeoutMs)
        after = f"{ms} ms" if ms is not None else format_seconds(seconds)
        GrambotError.__init__(self, f"instance {instance_id!r}: {stage} timed out after {after}")
        self.instance_id = instance_id
        self.stage = stage


class NotReady(GrambotError):
    """Raise from `create`/`load` when the instance cannot start *yet* (a service still
    booting, a network hiccup): the engine retries it with backoff."""


class SetupError(GrambotError):
    """Raise from `create`/`load` when the instance cannot work as configured (a refused key,
    a missing resource): the engine does not retry; it stays `failed` until its entry or its
    secrets change, or `grambot retry ID`."""


class MissingDependency(SetupError):
    """A module the plugin needs is not installed: `pip install ...` fixes it, waiting does
    not (reason `missing-dependency`, never retried). `module` is the missing module,
    `install` the command that brings it (e.g. `pip install 'grambot[anthropic]'`)."""

    def __init__(self, module: str, install: str, *, needed_by: str | None = None) -> None:
        self.module = module
        self.install = install
        who = f"{needed_by} needs" if needed_by else "needs"
        super().__init__(f"{who} the {module!r} package, which is not installed: {install}")


class RegistrationError(GrambotError):
    """A registration through a plugin's registrar was refused."""


class RegistrationConflict(RegistrationError):
    """The key is registered by another instance."""

    def __init__(self, kind: str, key: str, owner: str, requester: str) -> None:
        self.kind = kind
        self.key = key
        self.owner = owner
        self.requester = requester
        super().__init__(
            f"instance {requester!r} cannot register {kind} {key!r}: "
            f"it is already registered by instance {owner!r}"
        )


class PluginCrash(GrambotError):
    """Plugin code raised a BaseException. Only the engine may stop the engine: whatever a
    plugin raises is that plugin's failure. `name` is the type raised (e.g. `SystemExit`)."""

    def __init__(self, name: str, detail: str = "") -> None:
        self.name = name
        super().__init__(
            f"plugin code raised {name}: {detail}" if detail else f"plugin code raised {name}"
        )


class CallCancelled(GrambotError):
    """A call into an instance (a stage, a tool, a model call) was cancelled because the
    instance unloaded or reloaded meanwhile."""

    def __init__(self, instance_id: str, what: str) -> None:
        self.instance_id = instance_id
        self.what = what
        super().__init__(
            f"instance {instance_id!r}: {what} was cancelled: the instance unloaded meanwhile"
        )


class ProcessLost(CallCancelled):
    """A call into a process-isolated instance ended because its process ended (`reason`:
    crashed, killed, memory-limit, unresponsive)."""

    def __init__(self, instance_id: str, what: str, reason: str) -> None:
        self.reason = reason
        GrambotError.__init__(
            self, f"instance {instance_id!r}: {what} ended: its process {reason.replace('-', ' ')}"
        )
        self.instance_id = instance_id
        self.what = what


class IsolatedFailure(GrambotError):
    """How a process-isolated instance failed, as a Failure's fields (grambot.core.failures):
    its child process ended or was refused (`kind`: crashed, killed, memory-limit,
    unresponsive, sandbox-unavailable, isolation-required, ...), or the child classified what
    its plugin raised and sent that over."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        recoverable: bool,
        stage: str | None = None,
        details: str = "",
        conflict: tuple[str, str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.stage = stage
        self.recoverable = recoverable
        self.details = details
        self.conflict = conflict
        super().__init__(message)


class SecretsError(GrambotError):
    """The secrets store cannot be read or written."""


class MissingSecret(SecretsError):
    """An instance requires a secret nobody has set; the message says the command that sets
    it. Waiting does not help: `failed` (kind `missing-secret`) until the secret is set."""


class AccessDenied(GrambotError):
    """A plugin read an env variable or vault path its manifest does not allow.

    `what` is `"env"` or `"vault"`, `name` the variable or path refused.
    """

    def __init__(self, what: str, name: str, message: str) -> None:
        self.what = what
        self.name = name
        super().__init__(message)


class UnsafeFile(GrambotError):
    """A file grambot was about to read is not a regular file, or is larger than its cap; it
    was not read (a FIFO would block forever, `/dev/zero` would fill the memory). `reason` is
    the message without the path."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class LockBusy(GrambotError):
    """Another process held a lock file for longer than this one would wait."""

    def __init__(self, path: Path, waited: float, what: str) -> None:
        self.path = path
        self.waited = waited
        super().__init__(
            f"{path} was still held by another grambot process after {waited:g} s; {what} "
            "(set GRAMBOT_LOCK_TIMEOUT to wait longer)"
        )


class PluginImportDenied(ImportError):
    """A plugin module imported a module its manifest's `allowedModules` does not list."""


# -- raised by grambot.isolation.confine -----------------------------------------------------------


class SandboxRefused(Exception):
    """`sandbox: required` and the sandbox cannot be applied here."""


# -- raised by grambot.isolation.forkserver --------------------------------------------------------


class ZygoteError(Exception):
    """The zygote could not be started, or ended."""


# -- raised by grambot.isolation.landlock ----------------------------------------------------------


class LandlockError(OSError):
    """The sandbox could not be applied."""


# -- raised by grambot.isolation.process -----------------------------------------------------------


class ChildEnded(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


# -- raised by grambot.isolation.wire --------------------------------------------------------------


class FrameTooLarge(Exception):
    """A message over the pipe would exceed MAX_FRAME."""

    def __init__(self, size: int, limit: int, what: str = "message") -> None:
        self.size = size
        super().__init__(
            f"{what} of {size:,} bytes is over the {limit // (1024 * 1024)} MiB limit of "
            "the pipe to an isolated instance"
        )


# -- raised by grambot.isolation.calls -------------------------------------------------------------


class RemoteError(Exception):
    """What an isolated instance's object raised, by type name and message."""

    def __init__(self, type_name: str, message: str) -> None:
        self.type_name = type_name
        super().__init__(f"{type_name}: {message}" if message else type_name)


# -- raised by grambot.config.edit -----------------------------------------------------------------


class EditRefused(GrambotError):
    """The edit would make settings.json invalid (or cannot be made); nothing was written."""


# -- raised by grambot.app.lock --------------------------------------------------------------------


class EngineLocked(GrambotError):
    """Another engine holds the workspace's lock."""

    def __init__(self, workspace: Path, pid: int | None, lock: Path) -> None:
        self.workspace = workspace
        self.pid = pid
        who = f" (pid {pid})" if pid else ""
        super().__init__(
            f"another grambot engine{who} is already running in {workspace} "
            f"(it holds {lock}); stop it first, "
            "or use --workspace for another workspace"
        )


# -- raised by grambot.app.control -----------------------------------------------------------------


class NoAnswer(Exception):
    """The engine did not answer in time."""


# -- raised by grambot.registries.errors -----------------------------------------------------------


#: What went wrong, as a caller can act on it.
SERVICE_ERROR_KINDS: Final = (
    "auth",  # the credentials were refused (401/403): fix the secret
    "rate-limit",  # 429 / flood control, still failing after the allowed retries
    "timeout",  # no answer within the configured time
    "network",  # cannot connect, connection dropped
    "server",  # 5xx from the service
    "bad-request",  # the service refused the request as invalid (4xx other than above)
    "bad-response",  # an answer the plugin cannot understand (malformed body, missing fields)
    "refused",  # the service answered but declined the work (safety block, empty result)
    "unavailable",  # the instance is not running (stopped, not loaded yet)
)


_RETRYABLE: Final = frozenset({"rate-limit", "timeout", "network", "server"})


class ServiceError(GrambotError):
    """A call to an outside service failed; `kind` is one of `SERVICE_ERROR_KINDS`."""

    def __init__(
        self,
        message: str,
        *,
        instance_id: str,
        service: str,
        kind: str,
        status: int | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.service = service
        self.kind = kind
        self.status = status
        self.retry_after = retry_after
        self.detail = message
        self._retryable = retryable
        super().__init__(f"{service} (instance {instance_id!r}): {message}")

    @property
    def retryable(self) -> bool:
        """True when trying again later may succeed: the plugin's `retryable=` when it gave
        one, else by kind (rate limit, timeout, network, 5xx; never `auth`)."""
        if self._retryable is not None:
            return self._retryable
        return self.kind in _RETRYABLE


# -- raised by grambot.contract.definition ---------------------------------------------------------


class DefinitionError(Exception):
    """The entry module does not expose a usable plugin (message says what is missing)."""


class MigrationError(Exception):
    """An entry's settings cannot be brought up to the plugin's settings version."""


class SettingsInvalid(Exception):
    """Instance settings failed the plugin's schema; the message lists each path."""


# -- raised by grambot.bot.reply -------------------------------------------------------------------


class TurnFailed(Exception):
    """A step of a turn failed; the message is safe to show in the chat."""


# -- raised by grambot.storage.base ----------------------------------------------------------------


class StateError(GrambotError):
    """The state database cannot be used (its path, its schema, a failed write)."""


class SchemaTooNew(StateError):
    """The database was written by a newer grambot (its schema version is above ours)."""


# -- raised by grambot.cli.plugin_info -------------------------------------------------------------


class PluginUnreadable(Exception):
    """The entry module cannot be imported or does not define a plugin."""


# -- raised by grambot.cli.scaffold ----------------------------------------------------------------


class ScaffoldError(Exception):
    pass


# -- raised by grambot.kit.http --------------------------------------------------------------------


class HttpFailure(Exception):
    def __init__(
        self, kind: str, text: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(text)
        self.kind = kind
        self.text = text
        self.status = status
        self.retry_after = retry_after


def format_seconds(seconds: float) -> str:
    """`30 s`, `0.5 s`: how deadlines appear in messages."""
    return f"{seconds:g} s"


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`"; did you mean 'x'?"` for the closest of `choices` (case ignored), or `""`: the end of
    a message about a name a person typed (an instance id, a plugin id, a tool, a command)."""
    options = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(name.lower(), options, n=1, cutoff=0.6)
    return f"; did you mean {options[close[0]]!r}?" if close else ""
