"""How what plugin code raises becomes an instance's reason, and the one rule for
BaseExceptions from plugin code.

The rule (DESIGN §5.4): only the engine may stop the engine. A `CancelledError` is the engine's
own only when the engine cancelled the task it surfaces in (`current_task().cancelling() > 0`);
any other `CancelledError`, and every `SystemExit`, `KeyboardInterrupt`, `GeneratorExit` or other
BaseException raised by plugin code, is that plugin's failure and becomes a `PluginCrash` at the
boundary where the engine called the plugin (grambot.containment.boundary, used by its stages,
guards and task tracking).

    exception (at a stage)             kind                    retried?
    PluginNotFound                     plugin-not-found        no (loads when it appears)
    SettingsInvalid                    invalid-settings        no
    MigrationError                     migration-error         no
    DefinitionError                    invalid-plugin          no
    ImportError, anything at import    import-error            no
    StageTimeout                       timeout                 yes
    RegistrationConflict               registration-conflict   yes (at once when freed)
    grambot.NotReady                   not-ready               yes
    grambot.SetupError                 setup-error             no
    MissingSecret (api.secrets.require) missing-secret          no (at once when it is set)
    grambot.MissingDependency, or an   missing-dependency      no (its reason names the
      SDK of a built-in not installed                            `pip install` that fixes it)
    ServiceError(kind=k)               k (auth, network, ...)  its `retryable` (never auth)
    anything else in create/load/start create-error/...        yes
    IsolatedFailure (process isolation) its kind (crashed,      its `recoverable`
                                        killed, memory-limit, ...)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from grambot.containment.boundary import describe, format_details
from grambot.errors import (
    DefinitionError,
    IsolatedFailure,
    MigrationError,
    MissingDependency,
    MissingSecret,
    NotReady,
    PluginNotFound,
    RegistrationConflict,
    ServiceError,
    SettingsInvalid,
    SetupError,
    StageTimeout,
)

__all__ = ["Failure", "classify", "missing_dependency"]


@dataclass(frozen=True)
class Failure:
    """Why an instance is not running. `recoverable`: may pass by waiting (worth a retry)."""

    kind: str
    stage: str
    message: str
    recoverable: bool
    details: str = ""  # traceback text: never the exception object, which would pin frames
    conflict: tuple[str, str, str] | None = None  # (registry kind, key, owner) of a conflict


# The kind of an unexpected exception, by the stage it escaped from.
_STAGE_KINDS: dict[str, tuple[str, bool]] = {
    "import": ("import-error", False),
    "settings validation": ("invalid-settings", False),
    "settings migration": ("migration-error", False),
    "create": ("create-error", True),
    "load": ("load-error", True),
    "connector start": ("start-error", True),
}


def classify(exc: BaseException, stage: str, redact: Callable[[str], str]) -> Failure:
    """The Failure of `exc` raised at `stage`; `redact` masks secrets (grambot.masking) in
    every text of it."""
    if isinstance(exc, PluginNotFound):
        return Failure("plugin-not-found", stage, redact(str(exc)), recoverable=False)
    if isinstance(exc, IsolatedFailure):  # classified in the child, or its process ended
        return Failure(
            exc.kind,
            exc.stage or stage,
            redact(str(exc)),
            exc.recoverable,
            redact(exc.details),
            exc.conflict,
        )
    if isinstance(exc, StageTimeout):
        return Failure("timeout", exc.stage, redact(str(exc)), recoverable=True)
    if isinstance(exc, SettingsInvalid):
        return Failure("invalid-settings", stage, redact(str(exc)), recoverable=False)
    if isinstance(exc, DefinitionError):
        return Failure("invalid-plugin", stage, redact(str(exc)), recoverable=False)
    if isinstance(exc, MigrationError):
        return Failure("migration-error", stage, redact(str(exc)), recoverable=False)
    message = redact(describe(exc))
    details = redact(format_details(exc))
    if isinstance(exc, RegistrationConflict):
        conflict = (exc.kind, exc.key, exc.owner)
        return Failure("registration-conflict", stage, message, True, details, conflict)
    if isinstance(exc, NotReady):
        return Failure("not-ready", stage, message, recoverable=True, details=details)
    # What only the operator can fix, with the command in the message: no traceback.
    missing = missing_dependency(exc)  # (issue 14) before SetupError: it is one
    if missing is not None:
        return Failure("missing-dependency", stage, redact(str(missing)), False)
    if isinstance(exc, MissingSecret):
        return Failure("missing-secret", stage, message, recoverable=False)
    if isinstance(exc, SetupError):
        return Failure("setup-error", stage, message, recoverable=False, details=details)
    if isinstance(exc, ServiceError):
        return Failure(exc.kind, stage, message, recoverable=exc.retryable, details=details)
    kind, recoverable = _STAGE_KINDS.get(stage, ("load-error", True))
    return Failure(kind, stage, message, recoverable=recoverable, details=details)


def missing_dependency(exc: BaseException) -> MissingDependency | None:
    """`exc` as a MissingDependency: one raised on purpose, or a ModuleNotFoundError for an
    SDK that a grambot extra brings (`pip install 'grambot[openai]'`)."""
    if isinstance(exc, MissingDependency):
        return exc
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        from grambot.kit.sdk import install_hint

        top = exc.name.partition(".")[0]
        hint = install_hint(top)
        if hint is not None:
            return MissingDependency(top, hint)
    return None
