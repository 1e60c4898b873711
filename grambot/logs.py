"""Logging of the `grambot` command: text or JSON lines on stderr.

Every record about an instance names it: records of a plugin's own loggers
(`grambot.plugin.<instanceId>`, or a module logger inside the instance's namespace) and records
emitted while an instance's code runs get an `instance` attribute, shown as `[<id>]` in text
(unless the logger name already says it) and as `"instance"` in JSON. Every formatted line goes
through the one masker (grambot.masking.MASK): no secret value the engine read, in any form.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from grambot.masking import MASK, Masker

__all__ = ["FORMATS", "LEVELS", "MASK", "configure_logging"]

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")

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
    tracking = sys.modules.get("grambot.plugins.tracking")  # loaded only once plugins run
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
            if record.exc_text:
                data["exception"] = self.mask.apply(record.exc_text)
            return self.mask.apply(json.dumps(data, ensure_ascii=False))
        stamp = datetime.fromtimestamp(record.created).strftime("%Y-%m-%d %H:%M:%S")
        named = not instance or instance in record.name or f"instance {instance}" in message
        tag = "" if named else f" [{instance}]"
        head = f"{stamp}.{int(record.msecs):03d} {record.levelname:<7} {record.name}{tag}"
        line = f"{head}: {message}"
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        return self.mask.apply(line)


class _CurrentStderr:
    """Whatever `sys.stderr` is when a line is written: the console's prompt_toolkit session
    replaces it while it prompts (`patch_stdout`), so that log lines go above the prompt."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "info", fmt: str = "text", mask: Masker = MASK) -> None:
    """Send grambot's (and plugins') log records to stderr as text or JSON lines."""
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
