"""NanoBananaProvider: `generate(prompt, size=, count=, model=)` → saved files.

One generateContent call per image still wanted (the image models return one image per call);
`size` is an aspect ratio (`16:9`) or `WIDTHxHEIGHT`, mapped to the nearest ratio Gemini knows.
An answer without an image (a safety block, a text-only reply) is a `refused` ServiceError
quoting what the model said.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import importlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from grambot import GeneratedImage, PluginApi
from grambot.errors import HttpFailure
from grambot.kit.http import retry_after, send, status_failure
from grambot.kit.images import request_problem, save_all, sniff
from grambot.kit.provider import ImageBase

from .ratios import aspect_ratio

if TYPE_CHECKING:
    from .plugin import Settings

_DELAY = re.compile(r"^([0-9.]+)s$")


class NanoBananaProvider(ImageBase):
    """A `grambot.ImageProvider`; registered under its instance id."""

    service = "gemini"
    settings: Settings

    def __init__(self, api: PluginApi) -> None:
        super().__init__(api)
        self._httpx: Any = None

    async def open(self, key: str) -> Any:
        self._httpx = await asyncio.to_thread(importlib.import_module, "httpx")
        return self._httpx.AsyncClient(
            timeout=self.settings.timeout,
            headers={"x-goog-api-key": key, "Content-Type": "application/json"},
        )

    async def close(self, client: Any) -> None:
        await client.aclose()

    async def check(self) -> str:
        """List the models (the key is checked, no image is generated)."""
        s = self.settings
        try:
            response = await self._send("GET", f"{s.base_url.rstrip('/')}/models")
            if response.status_code != 200:
                raise self._status_failure(response)
        except HttpFailure as failure:
            raise self.error(failure.kind, failure.text, status=failure.status) from None
        models = [m.get("name", "?") for m in (response.json().get("models") or [])]
        return f"the key works: {len(models)} model(s)"

    def url(self, model: str) -> str:
        s = self.settings
        if s.endpoint:
            return s.endpoint.replace("{model}", model)
        return f"{s.base_url.rstrip('/')}/models/{model}:generateContent"

    async def generate(
        self, prompt: str, *, size: str | None = None, count: int = 1, model: str | None = None
    ) -> Sequence[GeneratedImage]:
        _ = self.client  # the `unavailable` error when not loaded
        s = self.settings
        problem = request_problem(prompt, count, s.max_count)
        if problem:
            raise self.error("bad-request", problem)
        try:
            ratio = aspect_ratio(size) if size else s.aspect_ratio
        except ValueError as exc:
            raise self.error("bad-request", str(exc)) from None
        body: dict[str, Any] = {
            "contents": [{"role": "user", "parts": [{"text": prompt}]}],
            "generationConfig": {"responseModalities": list(s.response_modalities)},
        }
        if ratio:
            body["generationConfig"]["imageConfig"] = {"aspectRatio": ratio}
        url = self.url(model or s.model)
        found: list[tuple[bytes, str, str]] = []
        for _ in range(count):
            try:
                found.extend(await self._call(url, body))
            except HttpFailure as failure:
                raise self.error(
                    failure.kind,
                    failure.text,
                    status=failure.status,
                    retry_after=failure.retry_after,
                ) from None
            if len(found) >= count:
                break
        return await save_all(self.images_dir, found[:count], self.api.logger)

    async def _send(self, method: str, url: str, **kwargs: Any) -> Any:
        s = self.settings
        return await send(
            self._httpx,
            self.client,
            method,
            url,
            max_retries=s.max_retries,
            max_retry_after=s.max_retry_after,
            timeout=s.timeout,
            retry_after_of=_google_retry_after,
            **kwargs,
        )

    async def _call(self, url: str, body: dict[str, Any]) -> list[tuple[bytes, str, str]]:
        response = await self._send("POST", url, json=body)
        if response.status_code != 200:
            raise self._status_failure(response)
        try:
            data = response.json()
        except ValueError as exc:
            raise HttpFailure(
                "bad-response", f"unexpected answer from {url}: not JSON ({exc})"
            ) from None
        return self._images(data, url)

    def _images(self, data: Any, url: str) -> list[tuple[bytes, str, str]]:
        try:
            candidates = data.get("candidates") or []
            parts = [
                part
                for candidate in candidates
                for part in ((candidate.get("content") or {}).get("parts") or [])
            ]
        except AttributeError:
            raise HttpFailure(
                "bad-response", f"unexpected answer from {url}: not a generateContent reply"
            ) from None
        found = []
        texts = []
        for part in parts:
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            inline = part.get("inlineData") or part.get("inline_data")
            if not isinstance(inline, dict):
                continue
            try:
                raw = base64.b64decode(inline.get("data") or "", validate=True)
            except (binascii.Error, ValueError):
                raise HttpFailure(
                    "bad-response", f"unexpected answer from {url}: image data is not base64"
                ) from None
            kind = sniff(raw)
            if kind is None:
                raise HttpFailure(
                    "bad-response",
                    f"unexpected answer from {url}: inlineData is not a PNG, JPEG, WebP or GIF",
                )
            found.append((raw, kind[0], kind[1]))
        if not found:
            if not isinstance(data, dict) or (
                "candidates" not in data and "promptFeedback" not in data
            ):
                raise HttpFailure(
                    "bad-response", f"unexpected answer from {url}: not a generateContent reply"
                )
            reasons = [str(c.get("finishReason")) for c in candidates if c.get("finishReason")]
            block = (data.get("promptFeedback") or {}).get("blockReason")
            if block:
                reasons.append(f"prompt blocked: {block}")
            said = f": {' '.join(texts)[:300]}" if texts else ""
            why = f" ({', '.join(reasons)})" if reasons else ""
            raise HttpFailure("refused", f"the model returned no image{why}{said}")
        return found

    def _status_failure(self, response: Any) -> HttpFailure:
        status = response.status_code
        try:
            error = response.json().get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        if not isinstance(error, dict):
            error = {}
        said = str(error.get("message") or response.text[:200] or response.reason_phrase)
        reasons = {d.get("reason") for d in error.get("details") or [] if isinstance(d, dict)}
        if (
            status in (401, 403)
            or "API_KEY_INVALID" in reasons
            or error.get("status") in ("UNAUTHENTICATED", "PERMISSION_DENIED")
        ):
            return HttpFailure(
                "auth",
                f"the API key was rejected ({status}: {said}); set it with "
                f"`grambot secrets set {self.id} apiKey`",
                status=status,
            )
        wait = _google_retry_after(response) if status == 429 else None
        return status_failure(status, said, self.settings.max_retries, wait)


def _google_retry_after(response: Any) -> float | None:
    """`Retry-After`, else the RetryInfo `retryDelay` ("7s") of Google's error details."""
    from_headers = retry_after(response.headers)
    if from_headers is not None:
        return from_headers
    try:
        details = response.json().get("error", {}).get("details") or []
    except (ValueError, AttributeError):
        return None
    for detail in details:
        if isinstance(detail, dict) and "retryDelay" in detail:
            match = _DELAY.match(str(detail["retryDelay"]))
            if match:
                return float(match[1])
    return None
