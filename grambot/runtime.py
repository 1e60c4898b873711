"""The long-running `grambot run` process: start the engine, wait for a signal, stop cleanly."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

from grambot.engine import Engine

logger = logging.getLogger(__name__)

EXIT_FORCED = 130


async def run(workspace: Path, *, stop: asyncio.Event | None = None) -> int:
    """Run the engine of `workspace` until SIGINT/SIGTERM (or `stop` is set); returns exit code.

    A second signal while stopping exits at once with a non-zero code.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal(signum: int) -> None:
        if stop.is_set():
            logger.error("second %s: exiting now", signal.Signals(signum).name)
            os._exit(EXIT_FORCED)
        logger.info("%s received: shutting down", signal.Signals(signum).name)
        stop.set()

    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    engine = Engine(workspace)
    try:
        await engine.start()
        loaded = engine.manager.loaded_ids()
        logger.info(
            "grambot ready in %s: %d instance(s) loaded%s",
            engine.workspace,
            len(loaded),
            f" ({', '.join(loaded)})" if loaded else "",
        )
        await stop.wait()
    finally:
        await engine.stop()
        for signum in signals:
            loop.remove_signal_handler(signum)
    logger.info("grambot stopped")
    return 0
