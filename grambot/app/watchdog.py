"""The loop watchdog: notices the event loop blocked, and names who blocked it.

Async plugin code that calls something blocking (`time.sleep`, `requests.get`, a CPU loop)
freezes every instance, every chat and the engine itself. A timer on the loop notes the time
every `interval`; a daemon thread checks that note, and when the loop has not come back for
`threshold` seconds it logs the instance whose code runs on the loop (the plain attribute
`grambot.containment.tracking.ON_LOOP`, set around every step of plugin code; else the innermost
frame of the loop thread that belongs to an instance's modules) with the loop thread's stack,
and counts the stall for that instance (`stalls` in status). A stall is reported once, when
it starts, and its length when it ends.

The watchdog only reports: a blocked loop cannot be interrupted from another thread. Process
isolation is what ends a plugin that blocks.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import FrameType

from grambot.containment.loader import NAMESPACE_ROOT
from grambot.containment.tracking import ON_LOOP

__all__ = ["LoopWatchdog", "instance_of_frame"]

logger = logging.getLogger(__name__)

_PREFIX = NAMESPACE_ROOT + "."


def instance_of_frame(frame: FrameType | None) -> str | None:
    """The instance whose module runs in `frame` or one of its callers, innermost first."""
    while frame is not None:
        name = frame.f_globals.get("__name__")
        if isinstance(name, str) and name.startswith(_PREFIX):
            return name[len(_PREFIX) :].partition(".")[0].rpartition("__")[0] or None
        frame = frame.f_back
    return None


class LoopWatchdog:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        threshold: float = 1.0,
        on_stall: Callable[[str | None], object] = lambda instance_id: None,
    ) -> None:
        """`on_stall(instance_id)` is called from the watchdog thread when a stall starts."""
        self.loop = loop
        self.threshold = threshold
        self.interval = min(0.25, threshold / 4)
        self.on_stall = on_stall
        self._seen = time.monotonic()  # the loop's last tick
        self._stop = threading.Event()
        self._loop_thread = threading.get_ident()
        self._timer: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """On the loop's thread."""
        self._loop_thread = threading.get_ident()
        self._tick()
        self._thread = threading.Thread(target=self._watch, name="grambot-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()

    def _tick(self) -> None:
        self._seen = time.monotonic()
        if not self._stop.is_set():
            self._timer = self.loop.call_later(self.interval, self._tick)

    def _watch(self) -> None:
        stalled_since: float | None = None
        while not self._stop.wait(self.interval):
            blocked = time.monotonic() - self._seen
            if blocked >= self.threshold and stalled_since is None:
                stalled_since = self._seen
                self._report(blocked)
            elif blocked < self.threshold and stalled_since is not None:
                logger.warning(
                    "event loop unblocked after %.1f s",
                    self._seen - stalled_since,
                    extra={"event": "loop.unblocked"},
                )
                stalled_since = None

    def _report(self, blocked: float) -> None:
        frame = sys._current_frames().get(self._loop_thread)
        instance_id = ON_LOOP.instance_id or instance_of_frame(frame)
        stack = "".join(traceback.format_stack(frame)).rstrip() if frame is not None else "?"
        del frame
        who = f"instance {instance_id}" if instance_id else "the engine (no plugin code runs)"
        logger.error(
            "event loop blocked for %.1f s by %s: every instance and chat waits; its stack:",
            blocked,
            who,
            extra={"event": "loop.stalled", "instance": instance_id, "stack": stack},
        )
        try:
            self.on_stall(instance_id)
        except Exception:
            logger.exception("watchdog: reporting the stall failed")
