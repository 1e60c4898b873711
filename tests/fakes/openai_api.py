"""A fake OpenAI API: POST /v1/responses, /v1/chat/completions and /v1/images/generations,
with OpenAI's error envelope and `Authorization: Bearer` check.

Replies are scripted (`reply_text`, `reply_tool_call`) or echo the last user text; images are a
tiny PNG per requested `n`, as `b64_json`.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections import deque
from typing import Any

from tests.fakes.base import FakeServer, Request, Response
from tests.fakes.telegram_api import PNG_1PX

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_exceeded",
    500: "server_error",
}


class FakeOpenAI(FakeServer):
    name = "openai"

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self._replies: deque[tuple[str, list[tuple[str, str, Any]]]] = deque()
        self._ids = itertools.count(1)
        self.bodies: list[dict[str, Any]] = []
        self.image_bytes = PNG_1PX

    def reply_text(self, text: str) -> None:
        self._replies.append((text, []))

    def reply_tool_call(self, name: str, arguments: dict[str, Any] | str, text: str = "") -> str:
        """Script a function call; `arguments` as a str goes out verbatim (garbled JSON)."""
        call_id = f"call_{next(self._ids):04d}"
        self._replies.append((text, [(call_id, name, arguments)]))
        return call_id

    def error_response(self, status: int, message: str, headers: dict[str, str]) -> Response:
        body = {
            "error": {
                "message": message,
                "type": ERROR_TYPES.get(status, "server_error"),
                "param": None,
                "code": "invalid_api_key" if status == 401 else None,
            }
        }
        return Response.json(body, status, **headers)

    def handle(self, request: Request) -> Response:
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        if given != self.api_key:
            return self.error_response(401, f"Incorrect API key provided: {given}.", {})
        if request.method == "GET" and request.path == "/v1/models":
            models = ("gpt-5.1-codex", "gpt-image-1")
            return Response.json(
                {
                    "object": "list",
                    "data": [
                        {"id": m, "object": "model", "created": 1700000000, "owned_by": "openai"}
                        for m in models
                    ],
                }
            )
        if request.method != "POST":
            return self.error_response(404, f"Unknown path {request.path}", {})
        body = request.json()
        self.bodies.append(body)
        if request.path == "/v1/responses":
            return self._responses(body)
        if request.path == "/v1/chat/completions":
            return self._chat(body)
        if request.path == "/v1/images/generations":
            return self._images(body)
        return self.error_response(404, f"Unknown path {request.path}", {})

    def _next(self, echo: str) -> tuple[str, list[tuple[str, str, Any]]]:
        return self._replies.popleft() if self._replies else (f"echo: {echo}", [])

    def _responses(self, body: dict[str, Any]) -> Response:
        items = body.get("input")
        echo = items if isinstance(items, str) else _last_user_text_responses(items or [])
        text, calls = self._next(echo)
        output: list[dict[str, Any]] = []
        if text:
            output.append(
                {
                    "type": "message",
                    "id": f"msg_{next(self._ids)}",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            )
        for call_id, name, arguments in calls:
            output.append(
                {
                    "type": "function_call",
                    "id": f"fc_{next(self._ids)}",
                    "call_id": call_id,
                    "name": name,
                    "arguments": _arguments(arguments),
                    "status": "completed",
                }
            )
        return Response.json(
            {
                "id": f"resp_{next(self._ids)}",
                "object": "response",
                "created_at": int(time.time()),
                "status": "completed",
                "model": body.get("model"),
                "output": output,
                "parallel_tool_calls": True,
                "tool_choice": "auto",
                "tools": body.get("tools", []),
                "usage": {
                    "input_tokens": 21,
                    "output_tokens": 9,
                    "total_tokens": 30,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens_details": {"reasoning_tokens": 0},
                },
            }
        )

    def _chat(self, body: dict[str, Any]) -> Response:
        echo = ""
        for message in reversed(body.get("messages", [])):
            if message.get("role") == "user":
                echo = str(message.get("content"))
                break
            if message.get("role") == "tool":
                echo = f"tool result {message.get('content')}"
                break
        text, calls = self._next(echo)
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            message["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": _arguments(arguments)},
                }
                for call_id, name, arguments in calls
            ]
        return Response.json(
            {
                "id": f"chatcmpl-{next(self._ids)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if calls else "stop",
                    }
                ],
                "usage": {"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30},
            }
        )

    def _images(self, body: dict[str, Any]) -> Response:
        if not body.get("prompt"):
            return self.error_response(400, "prompt is required", {})
        count = int(body.get("n") or 1)
        data = [
            {"b64_json": base64.b64encode(self.image_bytes).decode(), "revised_prompt": None}
            for _ in range(count)
        ]
        return Response.json(
            {
                "created": int(time.time()),
                "data": data,
                "usage": {"input_tokens": 10, "output_tokens": 100, "total_tokens": 110},
            }
        )


def _arguments(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _last_user_text_responses(items: list[dict[str, Any]]) -> str:
    for item in reversed(items):
        if item.get("type") == "function_call_output":
            return f"tool result {item.get('output')}"
        if item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            return " ".join(c.get("text", "") for c in content if isinstance(c, dict))
    return ""
