"""A fake Gemini API: POST /v1beta/models/<model>:generateContent answering with `inlineData`
image parts, with Google's error envelope (`{"error": {"code", "message", "status",
"details"}}`; an invalid key is a 400 API_KEY_INVALID, a 429 carries a RetryInfo delay)."""

from __future__ import annotations

import base64
from typing import Any

from tests.fakes.base import FakeServer, Request, Response
from tests.fakes.telegram_api import PNG_1PX

STATUSES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


class FakeGemini(FakeServer):
    name = "gemini"

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self.bodies: list[dict[str, Any]] = []
        self.images_per_call = 1
        self.image_bytes = PNG_1PX
        self.refuse = False  # answer with text only, as when the model declines

    def error_response(self, status: int, message: str, headers: dict[str, str]) -> Response:
        details: list[dict[str, Any]] = []
        delay = headers.pop("retryDelay", None)
        if delay is not None:
            details.append(
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}
            )
        if headers.pop("apiKeyInvalid", None):
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                }
            )
        body = {
            "error": {
                "code": status,
                "message": message,
                "status": STATUSES.get(status, "UNKNOWN"),
                "details": details,
            }
        }
        return Response.json(body, status, **headers)

    def handle(self, request: Request) -> Response:
        if request.method == "GET" and request.path == "/v1beta/models":
            given = request.headers.get("x-goog-api-key") or request.query.get("key", "")
            if given != self.api_key:
                return self.error_response(
                    400, "API key not valid. Please pass a valid API key.", {"apiKeyInvalid": "1"}
                )
            return Response.json(
                {
                    "models": [
                        {
                            "name": "models/gemini-2.5-flash-image",
                            "displayName": "Nano Banana",
                            "supportedGenerationMethods": ["generateContent"],
                        }
                    ]
                }
            )
        prefix, _, method = request.path.rpartition(":")
        if (
            request.method != "POST"
            or method != "generateContent"
            or not prefix.startswith("/v1beta/models/")
        ):
            return self.error_response(404, f"Not found: {request.path}", {})
        given = request.headers.get("x-goog-api-key") or request.query.get("key", "")
        if given != self.api_key:
            return self.error_response(
                400, "API key not valid. Please pass a valid API key.", {"apiKeyInvalid": "1"}
            )
        body = request.json()
        self.bodies.append(body)
        parts: list[dict[str, Any]] = [{"text": "Here is your image."}]
        finish = "STOP"
        if self.refuse:
            parts = [{"text": "I can't make that image."}]
            finish = "IMAGE_SAFETY"
        else:
            data = base64.b64encode(self.image_bytes).decode()
            parts += [
                {"inlineData": {"mimeType": "image/png", "data": data}}
                for _ in range(self.images_per_call)
            ]
        return Response.json(
            {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": parts},
                        "finishReason": finish,
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": 5,
                    "candidatesTokenCount": 1290,
                    "totalTokenCount": 1295,
                },
                "modelVersion": prefix.removeprefix("/v1beta/models/"),
            }
        )
