"""Asking the running engine to act on an instance: `grambot retry ID`, `grambot reload ID`.

A request is a file: the CLI writes `.scout/requests/<uuid>.json`
(`{"command": "retry", "instanceId": "tg"}`, atomically), the engine (which watches that
folder) removes it, acts through `Engine`, and writes `<uuid>.result`
(`{"ok": true, "message": "tg: loaded"}`), which the CLI reads and removes. Files need no port,
no token and no server, and only who may write `.scout/` may ask.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grambot.errors import NoAnswer, UnsafeFile
from grambot.files import read_regular, write_atomic

if TYPE_CHECKING:
    from grambot.engine import Engine

__all__ = ["COMMANDS", "REQUESTS_DIR", "NoAnswer", "handle_requests", "is_request", "send"]

logger = logging.getLogger(__name__)

REQUESTS_DIR = "requests"
COMMANDS = ("retry", "reload")
MAX_REQUEST_BYTES = 64 * 1024


def is_request(path: Path) -> bool:
    return (
        path.parent.name == REQUESTS_DIR
        and path.suffix == ".json"
        and not path.name.startswith(".")
    )


def send(scout_dir: Path, command: str, instance_id: str, timeout: float) -> dict[str, Any]:
    """Ask the engine of `scout_dir`; returns its answer `{"ok", "message"}` (NoAnswer)."""
    folder = scout_dir / REQUESTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    name = uuid.uuid4().hex
    request = {"command": command, "instanceId": instance_id}
    write_atomic(folder / f"{name}.json", json.dumps(request), fsync=False)
    result = folder / f"{name}.result"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer: dict[str, Any] = json.loads(read_regular(result, MAX_REQUEST_BYTES))
        except (OSError, ValueError, UnsafeFile):
            time.sleep(0.02)
            continue
        result.unlink(missing_ok=True)
        return answer
    (folder / f"{name}.json").unlink(missing_ok=True)
    raise NoAnswer(f"the engine did not answer within {timeout:g} s")


async def handle_requests(
    folder: Path, engine: Engine, flush: Callable[[], None] | None = None
) -> None:
    """Act on every request waiting in `folder` (oldest first); `flush` writes status.json
    before each answer, so a `grambot status` right after the command sees its outcome."""
    for path in _pending(folder):
        try:
            request = json.loads(read_regular(path, MAX_REQUEST_BYTES))
            path.unlink()
        except (OSError, ValueError):
            continue  # half-written or already taken
        except UnsafeFile as exc:  # a FIFO would block the event loop: never read
            logger.error("ignoring the request file %s", exc)
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        answer = await _act(engine, request)
        if flush is not None:
            flush()
        try:
            write_atomic(path.with_suffix(".result"), json.dumps(answer), fsync=False)
        except OSError as exc:
            logger.error("cannot answer the request %s: %s", path.name, exc)


def _pending(folder: Path) -> list[Path]:
    try:
        return sorted(
            (p for p in folder.iterdir() if is_request(p)), key=lambda p: p.stat().st_mtime
        )
    except OSError:  # the folder is gone, or a request was taken meanwhile
        return []


async def _act(engine: Engine, request: Any) -> dict[str, Any]:
    command = request.get("command") if isinstance(request, dict) else None
    instance_id = request.get("instanceId") if isinstance(request, dict) else None
    if command not in COMMANDS or not isinstance(instance_id, str):
        return {"ok": False, "message": f"not a request this engine understands: {request!r}"}
    instance = engine.instance(instance_id)
    if instance is None:
        known = ", ".join(sorted(i.instance_id for i in engine.instances())) or "none"
        return {"ok": False, "message": f"no instance {instance_id!r} (instances: {known})"}
    logger.info("%s of instance %s requested", command, instance_id)
    if command == "retry" and not await engine.retry(instance_id):
        return {
            "ok": False,
            "message": f"{instance_id} is {instance.state}, not failed or retrying: nothing to "
            "retry (grambot reload reloads a running instance)",
        }
    if command == "reload" and not await engine.reload([instance_id]):
        return {"ok": False, "message": f"{instance_id} is disabled: enable it first"}
    instance = engine.instance(instance_id)
    if instance is None:
        return {"ok": False, "message": f"{instance_id} was removed meanwhile"}
    state = str(instance.state)
    if instance.failure is not None:
        return {"ok": False, "message": f"{instance_id}: {state}: {instance.failure.message}"}
    return {"ok": True, "message": f"{instance_id}: {state}"}
