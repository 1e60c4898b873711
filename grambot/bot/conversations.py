"""Conversations on disk: one JSON file per (connector, chat), so a restart keeps context."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from grambot.registries.inference import ChatMessage, ToolCall
from grambot.secrets import write_private_file

logger = logging.getLogger(__name__)

_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _part(value: str) -> str:
    # Chat ids can be anything a connector says (negative numbers, emails): hash the unsafe.
    return value if _SAFE.match(value) else hashlib.sha256(value.encode()).hexdigest()[:32]


class ConversationStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, connector_id: str, chat_id: str) -> Path:
        return self.folder / _part(connector_id) / f"{_part(chat_id)}.json"

    def load(self, connector_id: str, chat_id: str) -> list[ChatMessage]:
        path = self.path(connector_id, chat_id)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return [_message(item) for item in data["messages"]]
        except FileNotFoundError:
            return []
        except (ValueError, KeyError, TypeError) as exc:
            logger.error("conversation %s is unreadable (%s); starting it afresh", path, exc)
            return []

    def save(self, connector_id: str, chat_id: str, messages: list[ChatMessage]) -> None:
        payload = {"messages": [asdict(m) for m in messages]}
        data = json.dumps(payload, ensure_ascii=False, indent=1).encode("utf-8")
        write_private_file(self.path(connector_id, chat_id), data)

    def reset(self, connector_id: str, chat_id: str) -> None:
        self.path(connector_id, chat_id).unlink(missing_ok=True)


def _message(item: dict[str, Any]) -> ChatMessage:
    calls = tuple(ToolCall(c["id"], c["name"], dict(c["arguments"])) for c in item["tool_calls"])
    return ChatMessage(
        role=item["role"],
        content=item["content"],
        tool_calls=calls,
        tool_call_id=item.get("tool_call_id"),
        is_error=bool(item.get("is_error", False)),
    )


def trim_history(messages: list[ChatMessage], limit: int) -> list[ChatMessage]:
    """The last `limit` messages, starting at a user turn so no tool result loses its call."""
    if len(messages) <= limit:
        return messages
    tail = messages[-limit:]
    for index, message in enumerate(tail):
        if message.role == "user":
            return tail[index:]
    return tail[-1:]
