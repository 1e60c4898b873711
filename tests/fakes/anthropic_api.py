"""A fake Anthropic API: POST /v1/messages and GET /v1/models, with Anthropic's error envelope.

Answers with the next scripted reply (`reply_text`, `reply_tool_use`) or, by default, echoes the
last user text. Checks the credentials it is given (`x-api-key` or `Authorization: Bearer`)
against `api_key` and answers 401 like Anthropic does when they differ.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any

from tests.fakes.base import FakeServer, Request, Response

MODELS = ("claude-sonnet-4-6", "claude-haiku-4-5")
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


class FakeAnthropic(FakeServer):
    name = "anthropic"

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self._replies: deque[list[dict[str, Any]]] = deque()
        self._ids = itertools.count(1)
        self.bodies: list[dict[str, Any]] = []

    def reply_text(self, text: str) -> None:
        self._replies.append([{"type": "text", "text": text}])

    def reply_tool_use(self, name: str, arguments: dict[str, Any], text: str = "") -> str:
        call_id = f"toolu_{next(self._ids):04d}"
        blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        blocks.append({"type": "tool_use", "id": call_id, "name": name, "input": arguments})
        self._replies.append(blocks)
        return call_id

    def error_response(self, status: int, message: str, headers: dict[str, str]) -> Response:
        body = {
            "type": "error",
            "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message},
            "request_id": "req_fake",
        }
        return Response.json(body, status, **headers)

    def handle(self, request: Request) -> Response:
        known = (request.method, request.path) in (("POST", "/v1/messages"), ("GET", "/v1/models"))
        if not known:
            return self.error_response(404, f"Not found: {request.path}", {})
        given = request.headers.get("x-api-key") or request.headers.get(
            "authorization", ""
        ).removeprefix("Bearer ")
        if given != self.api_key:
            # Like some real services, the message quotes the key it got.
            return self.error_response(401, f"invalid x-api-key: {given}", {})
        if request.path == "/v1/models":
            return Response.json(
                {
                    "data": [
                        {
                            "type": "model",
                            "id": model,
                            "display_name": model,
                            "created_at": "2025-01-01T00:00:00Z",
                        }
                        for model in MODELS
                    ],
                    "has_more": False,
                    "first_id": MODELS[0],
                    "last_id": MODELS[-1],
                }
            )
        body = request.json()
        self.bodies.append(body)
        if not body.get("model") or not isinstance(body.get("max_tokens"), int):
            return self.error_response(400, "model and max_tokens are required", {})
        blocks = (
            self._replies.popleft()
            if self._replies
            else [{"type": "text", "text": f"echo: {_last_user_text(body)}"}]
        )
        stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        return Response.json(
            {
                "id": f"msg_{next(self._ids):04d}",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": blocks,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": {"input_tokens": 12, "output_tokens": 7},
            }
        )


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        texts = [b.get("text", "") for b in content if b.get("type") == "text"]
        if texts:
            return " ".join(texts)
        results = [b for b in content if b.get("type") == "tool_result"]
        if results:
            return f"tool result {results[-1].get('content')}"
    return ""
