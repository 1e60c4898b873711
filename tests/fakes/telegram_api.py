"""A fake Telegram Bot API: /bot<token>/<method> and /file/bot<token>/<path>.

Speaks the real wire format (`{"ok": true, "result": ...}` / `{"ok": false, "error_code",
"description", "parameters"}`), accepts query, form-encoded, JSON and multipart bodies as
python-telegram-bot sends them, and serves several bots (tokens) at once. `getUpdates` long-polls:
it waits for `push_message` up to its `timeout`, and forgets updates below the given `offset`
exactly as Telegram confirms them.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.base import FakeServer, Request, Response

PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@dataclass
class BotState:
    token: str
    bot_id: int
    username: str
    pending: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)  # {"method", params...}
    offsets: list[int | None] = field(default_factory=list)  # offsets getUpdates was called with
    webhook: str = ""
    deleted_webhook: int = 0
    files: dict[str, bytes] = field(default_factory=dict)  # file_path -> bytes


class FakeTelegram(FakeServer):
    name = "telegram"

    def __init__(self, bots: dict[str, str] | None = None) -> None:
        """`bots`: token -> username of the bots it knows from the start (see add_bot)."""
        super().__init__()
        self.bots: dict[str, BotState] = {}
        for token, username in (bots or {}).items():
            self.add_bot(token, username)
        self._cond = threading.Condition()
        self._update_ids = itertools.count(1000)
        self._message_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self.max_long_poll = 2.0  # cap on a getUpdates wait, so a stuck test ends quickly
        # True: getUpdates ignores `offset` and hands each queued update out once, so an update
        # at or below the confirmed offset can come back (a confirmation Telegram lost).
        self.ignore_offset = False

    # -- set-up and scripting ----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.url}/file/bot"

    def plugin_settings(self, *allowed_user_ids: int, **extra: Any) -> dict[str, Any]:
        """Settings of the built-in telegram plugin that talk to this fake, answering the given
        users, with a short long poll so that a test (and its engine's stop) never waits long."""
        return {
            "baseUrl": self.base_url,
            "baseFileUrl": self.base_file_url,
            "allowedUserIds": list(allowed_user_ids),
            "pollTimeout": 1,
            **extra,
        }

    def add_bot(self, token: str, username: str = "fake_bot") -> BotState:
        bot_id = int(token.split(":", 1)[0]) if ":" in token else 4242
        state = BotState(token, bot_id, username)
        self.bots[token] = state
        return state

    def push_message(
        self,
        token: str,
        text: str | None = "hello",
        *,
        user_id: int = 111,
        chat_id: int | None = None,
        first_name: str = "Ada",
        photo: bytes | None = None,
        caption: str | None = None,
        update_id: int | None = None,
    ) -> int:
        """Queue an update carrying a message; returns its update_id."""
        state = self.bots[token]
        update_id = next(self._update_ids) if update_id is None else update_id
        chat = chat_id if chat_id is not None else user_id
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat, "type": "private" if chat == user_id else "group"},
            "from": {"id": user_id, "is_bot": False, "first_name": first_name},
        }
        if text is not None:
            message["text"] = text
        if photo is not None:
            file_id = f"file{next(self._file_ids)}"
            path = f"photos/{file_id}.png"
            state.files[path] = photo
            message["photo"] = [
                {
                    "file_id": file_id,
                    "file_unique_id": f"u{file_id}",
                    "width": 1,
                    "height": 1,
                    "file_size": len(photo),
                }
            ]
            if caption is not None:
                message["caption"] = caption
        with self._cond:
            state.pending.append({"update_id": update_id, "message": message})
            self._cond.notify_all()
        return update_id

    def sent(self, token: str, method: str | None = None) -> list[dict[str, Any]]:
        return [s for s in self.bots[token].sent if method is None or s["method"] == method]

    def on_stop(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- wire format -------------------------------------------------------------------------

    def error_response(self, status: int, message: str, headers: dict[str, str]) -> Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": message}
        retry_after = headers.pop("retry_after", None)
        if retry_after is not None:
            body["parameters"] = {"retry_after": int(retry_after)}
            body["description"] = f"Too Many Requests: retry after {retry_after}"
        return Response.json(body, status, **headers)

    def handle(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/")
        if len(parts) >= 3 and parts[0] == "file" and parts[1].startswith("bot"):
            state = self.bots.get(parts[1][3:])
            content = state.files.get("/".join(parts[2:])) if state else None
            if content is None:
                return Response(404, b"not found", {"Content-Type": "text/plain"})
            return Response(200, content, {"Content-Type": "application/octet-stream"})
        if len(parts) != 2 or not parts[0].startswith("bot"):
            return self.error_response(404, "Not Found", {})
        state = self.bots.get(parts[0][3:])
        if state is None:
            return self.error_response(401, "Unauthorized", {})
        method = parts[1]
        params = request.params()
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return self.error_response(404, "Not Found: method not found", {})
        result = handler(state, params)
        if isinstance(result, Response):
            return result
        return Response.json({"ok": True, "result": result})

    def _m_getMe(self, state: BotState, params: dict[str, Any]) -> Any:
        return {
            "id": state.bot_id,
            "is_bot": True,
            "first_name": "Fake",
            "username": state.username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    def _m_deleteWebhook(self, state: BotState, params: dict[str, Any]) -> Any:
        state.webhook = ""
        state.deleted_webhook += 1
        if str(params.get("drop_pending_updates", "")).lower() == "true":
            with self._cond:
                state.pending.clear()
        return True

    def _m_getUpdates(self, state: BotState, params: dict[str, Any]) -> Any:
        offset = int(params["offset"]) if params.get("offset") not in (None, "") else None
        wait = min(float(params.get("timeout") or 0), self.max_long_poll)
        limit = int(params.get("limit") or 100)
        state.offsets.append(offset)
        ignore_offset = self.ignore_offset  # as when the request came in
        deadline = time.monotonic() + wait
        with self._cond:
            if offset is not None and not ignore_offset:
                state.pending[:] = [u for u in state.pending if u["update_id"] >= offset]
            while not state.pending and not self._stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = list(state.pending[:limit])
            if ignore_offset:  # hand each update out once, whatever the offset says
                del state.pending[: len(batch)]
            return batch

    def _message(self, state: BotState, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        message = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": {"id": state.bot_id, "is_bot": True, "first_name": "Fake"},
            **extra,
        }
        return message

    def _record(self, state: BotState, method: str, params: dict[str, Any]) -> None:
        with self._cond:
            state.sent.append({"method": method, **params})

    def _m_sendMessage(self, state: BotState, params: dict[str, Any]) -> Any:
        text = str(params.get("text", ""))
        if not text or len(text.encode("utf-16-le")) // 2 > 4096:
            return self.error_response(400, "Bad Request: message is too long", {})
        self._record(state, "sendMessage", params)
        return self._message(state, params, text=text)

    def _m_sendPhoto(self, state: BotState, params: dict[str, Any]) -> Any:
        if not isinstance(params.get("photo"), bytes | str):
            return self.error_response(400, "Bad Request: there is no photo in the request", {})
        self._record(state, "sendPhoto", params)
        photo = [{"file_id": "sent1", "file_unique_id": "usent1", "width": 1, "height": 1}]
        extra: dict[str, Any] = {"photo": photo}
        if params.get("caption"):
            extra["caption"] = params["caption"]
        return self._message(state, params, **extra)

    def _m_sendDocument(self, state: BotState, params: dict[str, Any]) -> Any:
        self._record(state, "sendDocument", params)
        document = {"file_id": "doc1", "file_unique_id": "udoc1", "file_name": "file"}
        return self._message(state, params, document=document)

    def _m_sendChatAction(self, state: BotState, params: dict[str, Any]) -> Any:
        return True

    def _m_getFile(self, state: BotState, params: dict[str, Any]) -> Any:
        file_id = str(params["file_id"])
        for path, content in state.files.items():
            if path.split("/")[-1].startswith(file_id + "."):
                return {
                    "file_id": file_id,
                    "file_unique_id": f"u{file_id}",
                    "file_size": len(content),
                    "file_path": path,
                }
        return self.error_response(400, "Bad Request: invalid file_id", {})
