"""Logging of the `grambot` command: text or JSON lines on stderr (docs/logging.md).

Every record about an instance names it: records of a plugin's own loggers
(`grambot.plugin.<instanceId>`, or a module logger inside the instance's namespace) and records
emitted while an instance's code runs get an `instance` attribute, shown as `[<id>]` in text
(unless the logger name already says it) and as `"instance"` in JSON. Every formatted line goes
through the one masker (grambot.masking.MASK): no secret value the engine read, in any form.

In JSON every line is one object, whatever writes it:

* the engine's records carry structured fields given as `extra=` (FIELDS: `event`, the name of
  what happened, `instance`, `stage`, `kind`, `attempt`, `chat`, ...); a traceback or a stack
  goes in `exception` / `stack` (`extra={"details": text}` / `{"stack": text}`), never in
  `message`; in text they follow the message on their own lines, as before;
* Python warnings (logging.captureWarnings), uncaught exceptions of the main thread, of other
  threads and "exception ignored" ones (`install_exception_hooks`, for `grambot run`) become
  records too;
* the few lines written without logging (a second signal, the shutdown deadline:
  grambot.app.signals) are formatted by `raw_line` in the configured format.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from grambot.masking import MASK, Masker

__all__ = [
    "FIELDS",
    "FORMATS",
    "LEVELS",
    "MASK",
    "configure_logging",
    "install_exception_hooks",
    "log_format",
    "raw_line",
]

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
# Structured fields a record may carry (logging's `extra=`), copied into the JSON object as
# they are: what happened (`event`), to whom, and the figures of a handled message.
FIELDS = (
    "event",
    "stage",
    "kind",
    "attempt",
    "connector",
    "chat",
    "provider",
    "model",
    "command",
    "tools",
    "latency",
    "queued",
    "tokens",
    "sent",
    "eventType",
    "eventId",
    "text",
    "reply",
)
_current_format = "text"  # set by configure_logging, read by raw_line

_PLUGIN_PREFIX = "grambot.plugin."
_NAMESPACE_PREFIX = "grambot.instances."


def _instance_of(record: logging.LogRecord) -> str | None:
    # the engine's own lines about one instance read "instance %s ..."
    if isinstance(record.msg, str) and record.msg.startswith("instance %s"):
        args = record.args
        if isinstance(args, tuple) and args and isinstance(args[0], str):
            return args[0]
    name = record.name
    if name.startswith(_PLUGIN_PREFIX):
        return name[len(_PLUGIN_PREFIX) :].partition(".")[0]
    if name.startswith(_NAMESPACE_PREFIX):
        return name[len(_NAMESPACE_PREFIX) :].partition(".")[0].rpartition("__")[0] or None
    tracking = sys.modules.get("grambot.containment.tracking")  # loaded only once plugins run
    current = getattr(tracking, "current_instance_id", None)
    return current() if callable(current) else None


class _Formatter(logging.Formatter):
    def __init__(self, fmt: str, mask: Masker) -> None:
        super().__init__()
        self.fmt = fmt
        self.mask = mask

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        instance = getattr(record, "instance", None) or _instance_of(record)
        exception = "\n".join(
            text for text in (getattr(record, "details", None), record.exc_text) if text
        )
        stack = getattr(record, "stack", None) or record.stack_info
        if self.fmt == "json":
            # Masked before encoding: JSON escapes the quotes and backslashes of a secret.
            data: dict[str, Any] = {
                "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": self.mask.apply(message),
            }
            if instance:
                data["instance"] = instance
            for name in FIELDS:
                value = getattr(record, name, None)
                if value is not None:
                    data[name] = value
            if exception:
                data["exception"] = self.mask.apply(exception)
            if stack:
                data["stack"] = self.mask.apply(str(stack))
            return self.mask.apply(json.dumps(data, ensure_ascii=False, default=str))
        stamp = datetime.fromtimestamp(record.created).strftime("%Y-%m-%d %H:%M:%S")
        named = not instance or instance in record.name or f"instance {instance}" in message
        tag = "" if named else f" [{instance}]"
        head = f"{stamp}.{int(record.msecs):03d} {record.levelname:<7} {record.name}{tag}"
        line = "\n".join(text for text in (f"{head}: {message}", stack, exception) if text)
        return self.mask.apply(line)


class _CurrentStderr:
    """Whatever `sys.stderr` is when a line is written: the console's prompt_toolkit session
    replaces it while it prompts (`patch_stdout`), so that log lines go above the prompt."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "info", fmt: str = "text", mask: Masker = MASK) -> None:
    """Send grambot's (and plugins') log records, Python warnings included, to stderr as text
    or JSON lines."""
    global _current_format
    _current_format = fmt
    logging.captureWarnings(True)  # warnings.warn(...) becomes a record of `py.warnings`
    handler: logging.StreamHandler[Any] = logging.StreamHandler(_CurrentStderr())
    handler.setFormatter(_Formatter(fmt, mask))
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old.formatter, _Formatter):  # ours from an earlier call: replace it
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # watchfiles reports every batch at INFO; the engine logs what a change did instead
    logging.getLogger("watchfiles").setLevel("DEBUG" if level == "debug" else "WARNING")


def log_format() -> str:
    """The format configure_logging set ("text" until it is called)."""
    return _current_format


def raw_line(
    message: str, *, level: str = "error", name: str = "grambot", stack: str = "", mask: bool = True
) -> str:
    """One log line (no newline) in the configured format, made without logging's locks: for
    code that cannot log (a signal handler). `mask=False` where the masker's lock may be held
    by the interrupted code (a signal handler; its messages hold no secret)."""
    apply = MASK.apply if mask else str
    now = datetime.now(UTC)
    if _current_format == "json":
        data: dict[str, Any] = {
            "time": now.isoformat(),
            "level": level,
            "logger": name,
            "message": apply(message),
        }
        if stack:
            data["stack"] = apply(stack)
        return json.dumps(data, ensure_ascii=False)
    stamp = now.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    line = f"{stamp} {level.upper():<7} {name}: {message}"
    return apply(f"{line}\n{stack}" if stack else line)


def install_exception_hooks() -> None:
    """Uncaught exceptions (main thread, other threads, "exception ignored in ...") become log
    records of `grambot.uncaught`: masked, and JSON lines in the JSON format (for `grambot
    run`, whose stderr is the log)."""
    log = logging.getLogger("grambot.uncaught")

    def main_thread(
        kind: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        log.critical("uncaught exception", exc_info=(kind, exc, tb), extra={"event": "uncaught"})

    def other_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        log.error(
            "uncaught exception in thread %s",
            name,
            exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
            extra={"event": "uncaught"},
        )

    def unraisable(info: Any) -> None:
        try:
            where = f"{info.err_msg or 'Exception ignored in'}: {info.object!r}"
        except Exception:
            where = info.err_msg or "Exception ignored"
        exc_info = (info.exc_type, info.exc_value, info.exc_traceback) if info.exc_value else None
        log.error("%s", where, exc_info=exc_info, extra={"event": "unraisable"})

    sys.excepthook = main_thread
    threading.excepthook = other_thread
    sys.unraisablehook = unraisable
