"""The exception boundary: what the engine does with whatever plugin code raises.

Only the engine may stop the engine (DESIGN §5.4). A `CancelledError` is the engine's own only
when the engine cancelled the task it surfaces in; any other BaseException from plugin code
becomes a `PluginCrash` (`crash`) where the engine called the plugin. Describing an exception
never raises, whatever its `__str__` does. How a failure becomes an instance's reason is the
core's business (grambot.core.failures).
"""

from __future__ import annotations

import asyncio
import traceback

from grambot.errors import PluginCrash

__all__ = ["crash", "describe", "engine_cancelled", "format_details"]


def engine_cancelled(exc: BaseException) -> bool:
    """True when `exc` is the engine cancelling the current task, not plugin code raising it."""
    if not isinstance(exc, asyncio.CancelledError):
        return False
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def describe(exc: BaseException) -> str:
    """`Type: message`, never raising, whatever the exception's `__str__` does."""
    name = type(exc).__name__
    try:
        text = str(exc)
    except BaseException:  # a plugin's __str__ may raise anything
        text = "<its str() failed>"
    if isinstance(exc, PluginCrash):
        return text  # "plugin code raised SystemExit: 3" names the type already
    return f"{name}: {text}" if text else name


def format_details(exc: BaseException) -> str:
    """The traceback as text, never raising."""
    try:
        return "".join(traceback.format_exception(exc)).rstrip()
    except BaseException:
        return describe(exc)


def crash(exc: BaseException) -> PluginCrash:
    """A plugin's BaseException as an ordinary exception (the original as its cause)."""
    try:
        detail = str(exc)
    except BaseException:
        detail = "<its str() failed>"
    error = PluginCrash(type(exc).__name__, detail)
    error.__cause__ = exc
    return error
