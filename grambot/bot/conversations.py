"""What of a conversation goes to the model, and the one-time import of the conversations that
grambot kept as JSON files under `.scout/bot/conversations/` before they moved into the state
database (grambot.storage)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from grambot.registries.inference import ChatMessage, ToolCall
from grambot.storage.base import ConversationStore

logger = logging.getLogger(__name__)

_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
LEGACY_DIR = "conversations"
IMPORTED_DIR = "conversations.imported"


def legacy_part(value: str) -> str:
    """How the old file store named a connector or chat id (hashed when unsafe in a path)."""
    return value if _SAFE.match(value) else hashlib.sha256(value.encode()).hexdigest()[:32]


def cap_content(text: str, limit: int, what: str = "tool result") -> str:
    """`text`, cut to `limit` characters with a note saying so (and how long it was)."""
    if len(text) <= limit:
        return text
    note = f"\n[cut: the {what} had {len(text)} characters; only the first {limit} are kept]"
    return text[:limit] + note


def trim_history(
    messages: list[ChatMessage], limit: int, max_chars: int | None = None
) -> list[ChatMessage]:
    """The last `limit` messages, then fewer until they hold at most `max_chars` characters,
    starting at a user turn so no tool result loses its call (the last user turn is always
    kept, whatever its size)."""
    tail = messages[-limit:] if len(messages) > limit else messages
    if max_chars is not None:
        size = 0
        start = len(tail)
        for index in range(len(tail) - 1, -1, -1):
            size += _size(tail[index])
            if size > max_chars:
                break
            start = index
        tail = tail[start:]
    for index, message in enumerate(tail):
        if message.role == "user":
            return tail[index:] if index else tail
    users = [i for i, m in enumerate(messages) if m.role == "user"]
    return messages[users[-1] :] if users else tail[-1:]


def _size(message: ChatMessage) -> int:
    if not message.tool_calls:
        return len(message.content)
    return len(message.content) + sum(len(json.dumps(c.arguments)) for c in message.tool_calls)


def read_legacy(folder: Path) -> list[tuple[str, str, float, list[ChatMessage]]]:
    """(connector part, chat part, mtime, messages) of every old conversation file."""
    found = []
    for path in sorted(folder.glob("*/*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            messages = [_message(item) for item in data["messages"]]
            found.append((path.parent.name, path.stem, os.path.getmtime(path), messages))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.error("conversation file %s is unreadable (%s); not imported", path, exc)
    return found


async def import_legacy(bot_dir: Path, store: ConversationStore, keep: int) -> int:
    """Import `.scout/bot/conversations/` into `store` once, then rename the folder to
    `conversations.imported` (kept as it was, so nothing is lost). Returns the chats imported."""
    import asyncio

    folder = bot_dir / LEGACY_DIR
    if not folder.is_dir():
        return 0
    found = await asyncio.to_thread(read_legacy, folder)
    for connector, chat, _, messages in found:
        if messages:
            await store.append(connector, chat, messages, keep=keep)
    target = bot_dir / IMPORTED_DIR
    if target.exists():
        target = bot_dir / f"{IMPORTED_DIR}.{os.getpid()}"
    folder.rename(target)
    logger.info(
        "imported %d conversation(s) from %s into the state database (the files are kept in %s)",
        len(found),
        folder,
        target,
    )
    return len(found)


def _message(item: dict[str, Any]) -> ChatMessage:
    calls = tuple(ToolCall(c["id"], c["name"], dict(c["arguments"])) for c in item["tool_calls"])
    return ChatMessage(
        role=item["role"],
        content=item["content"],
        tool_calls=calls,
        tool_call_id=item.get("tool_call_id"),
        is_error=bool(item.get("is_error", False)),
    )
