"""SIGINT/SIGTERM for `grambot run`, and the deadline that bounds every shutdown.

The handlers are plain `signal.signal` handlers, not the event loop's: Python runs them in the
main thread between two bytecodes, so they act even while plugin code blocks the loop (a busy
loop, `time.sleep`). The first signal arms the shutdown deadline and asks the loop to shut
down; the second removes status.json and ends the process at once (exit 130).

The deadline is `faulthandler.dump_traceback_later(timeout, exit=True)`: a C thread that needs
no GIL, so it holds even while a C call holds the GIL, and when it fires it writes every
thread's stack to stderr (the log) and exits. Just before it, a Python thread does the same
and also removes status.json (it needs the GIL, which a blocked loop in Python code or in
`time.sleep` leaves free). A C call that holds the GIL does delay the Python handler of even
the first signal; once the handler has run, the deadline holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from grambot.app.logs import log_format, raw_line

__all__ = ["EXIT_FORCED", "ShutdownSignals", "arm_deadline", "disarm_deadline"]


def _thread_stacks() -> str:
    """Every thread's stack, most recent call last (faulthandler's content, for a JSON line)."""
    names = {t.ident: t.name for t in threading.enumerate()}
    parts = []
    for ident, frame in sys._current_frames().items():
        stack = "".join(traceback.format_stack(frame)).rstrip()
        parts.append(f"Thread {names.get(ident, ident)} ({ident:#x}):\n{stack}")
    return "\n\n".join(parts)


EXIT_FORCED = 130
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_armed: threading.Event | None = None  # set: the deadline is disarmed


def _stderr() -> TextIO | None:
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                stream.fileno()
                return stream
        except (AttributeError, OSError, ValueError):  # a captured stream (tests)
            continue
    return None


def arm_deadline(seconds: float, status_file: Path | None = None) -> None:
    """Exit the process, every thread's stack written to stderr, `seconds` from now (once)."""
    global _armed
    stream = _stderr()
    if _armed is not None or stream is None:
        return
    faulthandler.dump_traceback_later(seconds, exit=True, file=stream)
    _armed = disarmed = threading.Event()
    early = max(0.0, seconds - min(0.5, seconds * 0.1))

    def last_resort() -> None:
        if disarmed.wait(early):
            return
        message = f"shutdown did not finish within {seconds:g} s; exiting now"
        with contextlib.suppress(OSError):
            if log_format() == "json":  # one JSON line, the stacks in it (grambot.app.logs)
                line = raw_line(message, name="grambot.app.signals", stack=_thread_stacks())
                os.write(2, line.encode() + b"\n")
            else:
                os.write(2, raw_line(message, name="grambot.app.signals").encode() + b"\n")
                faulthandler.dump_traceback(file=stream, all_threads=True)
        if status_file is not None:
            with contextlib.suppress(OSError):
                status_file.unlink()
        os._exit(1)

    threading.Thread(target=last_resort, name="grambot-deadline", daemon=True).start()


def disarm_deadline() -> None:
    """For code that runs the engine in a longer-lived process (tests, embedding)."""
    global _armed
    faulthandler.cancel_dump_traceback_later()
    if _armed is not None:
        _armed.set()
    _armed = None


@dataclass(eq=False)
class ShutdownSignals:
    """`on_first(signal name)` runs on the loop; `deadline`: the shutdown timeout."""

    loop: asyncio.AbstractEventLoop
    on_first: Callable[[str], None]
    _: KW_ONLY
    deadline: float
    status_file: Path
    received: int = field(default=0, init=False)
    _previous: dict[int, Any] = field(default_factory=dict, init=False, repr=False)

    def install(self) -> bool:
        """Install the handlers; False where that is impossible (not the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for signum in _SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return True

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.received += 1
        if self.received == 1:
            arm_deadline(self.deadline, self.status_file)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to ask
                self.loop.call_soon_threadsafe(self.on_first, name)
            return
        # No logging here: the main thread may be inside a logging call holding its lock (or
        # in the masker, holding its: this line holds no secret, so it is not masked).
        message = f"second {name}: exiting now without finishing the shutdown"
        line = raw_line(message, name="grambot.app.signals", mask=False)
        with contextlib.suppress(OSError):
            os.write(2, line.encode() + b"\n")
        with contextlib.suppress(OSError):
            self.status_file.unlink()
        os._exit(EXIT_FORCED)
