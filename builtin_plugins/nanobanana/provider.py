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

from grambot import GeneratedImage, PluginApi, ServiceError
from grambot.kit.http import Failure, retry_after, send, status_failure
from grambot.kit.images import save, sniff

from .ratios import aspect_ratio

if TYPE_CHECKING:
    from .plugin import Settings

SERVICE = "gemini"
MASK = "<apiKey>"
_DELAY = re.compile(r"^([0-9.]+)s$")


class NanoBananaProvider:
    """A `grambot.ImageProvider`; registered under its instance id."""

    def __init__(self, api: PluginApi) -> None:
        self.api = api
        self.settings: Settings = api.settings
        self.id = api.instance.instance_id
        self.images_dir = api.data_dir / "images"
        self._key: str | None = None
        self._client: Any = None
        self._httpx: Any = None

    async def load(self) -> None:
        await self.connect()
        self.api.registrar.register_image_provider(self)

    async def connect(self) -> None:
        """Read the key and make the HTTP client (no request is sent)."""
        self._key = self.api.secrets.require("apiKey")
        self._httpx = await asyncio.to_thread(importlib.import_module, "httpx")
        self._client = self._httpx.AsyncClient(
            timeout=self.settings.timeout,
            headers={"x-goog-api-key": self._key, "Content-Type": "application/json"},
        )

    async def check(self) -> str:
        """List the models (the key is checked, no image is generated)."""
        s = self.settings
        url = f"{s.base_url.rstrip('/')}/models"
        try:
            response = await send(
                self._httpx,
                self._client,
                "GET",
                url,
                max_retries=s.max_retries,
                max_retry_after=s.max_retry_after,
                timeout=s.timeout,
                retry_after_of=_google_retry_after,
            )
            if response.status_code != 200:
                raise self._status_failure(response)
        except Failure as failure:
            raise self._error(failure.kind, failure.text, status=failure.status) from None
        models = [m.get("name", "?") for m in (response.json().get("models") or [])]
        return f"the key works: {len(models)} model(s)"

    async def unload(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def url(self, model: str) -> str:
        s = self.settings
        if s.endpoint:
            return s.endpoint.replace("{model}", model)
        return f"{s.base_url.rstrip('/')}/models/{model}:generateContent"

    async def generate(
        self, prompt: str, *, size: str | None = None, count: int = 1, model: str | None = None
    ) -> Sequence[GeneratedImage]:
        if self._client is None:
            raise self._error("unavailable", "the image provider is not loaded")
        s = self.settings
        if not prompt or not prompt.strip():
            raise self._error("bad-request", "the prompt is empty")
        if not 1 <= count <= s.max_count:
            raise self._error("bad-request", f"count must be 1..{s.max_count} (got {count})")
        try:
            ratio = aspect_ratio(size) if size else s.aspect_ratio
        except ValueError as exc:
            raise self._error("bad-request", str(exc)) from None
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
            except Failure as failure:
                raise self._error(
                    failure.kind,
                    failure.text,
                    status=failure.status,
                    retry_after=failure.retry_after,
                ) from None
            if len(found) >= count:
                break
        images = []
        for index, (data, mime, suffix) in enumerate(found[:count]):
            path = await asyncio.to_thread(save, self.images_dir, data, suffix, index)
            images.append(GeneratedImage(path=path, mime_type=mime, size_bytes=len(data)))
        self.api.logger.info("saved %s image(s) in %s", len(images), self.images_dir)
        return images

    async def _call(self, url: str, body: dict[str, Any]) -> list[tuple[bytes, str, str]]:
        s = self.settings
        response = await send(
            self._httpx,
            self._client,
            "POST",
            url,
            json=body,
            max_retries=s.max_retries,
            max_retry_after=s.max_retry_after,
            timeout=s.timeout,
            retry_after_of=_google_retry_after,
        )
        if response.status_code != 200:
            raise self._status_failure(response)
        try:
            data = response.json()
        except ValueError as exc:
            raise Failure(
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
            raise Failure(
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
                raise Failure(
                    "bad-response", f"unexpected answer from {url}: image data is not base64"
                ) from None
            kind = sniff(raw)
            if kind is None:
                raise Failure(
                    "bad-response",
                    f"unexpected answer from {url}: inlineData is not a PNG, JPEG, WebP or GIF",
                )
            found.append((raw, kind[0], kind[1]))
        if not found:
            if not isinstance(data, dict) or (
                "candidates" not in data and "promptFeedback" not in data
            ):
                raise Failure(
                    "bad-response", f"unexpected answer from {url}: not a generateContent reply"
                )
            reasons = [str(c.get("finishReason")) for c in candidates if c.get("finishReason")]
            block = (data.get("promptFeedback") or {}).get("blockReason")
            if block:
                reasons.append(f"prompt blocked: {block}")
            said = f": {' '.join(texts)[:300]}" if texts else ""
            why = f" ({', '.join(reasons)})" if reasons else ""
            raise Failure("refused", f"the model returned no image{why}{said}")
        return found

    def _status_failure(self, response: Any) -> Failure:
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
            return Failure(
                "auth",
                f"the API key was rejected ({status}: {said}); set it with "
                f"`grambot secrets set {self.id} apiKey`",
                status=status,
            )
        wait = _google_retry_after(response) if status == 429 else None
        return status_failure(status, said, self.settings.max_retries, wait)

    def _error(
        self,
        kind: str,
        text: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> ServiceError:
        if self._key:
            text = text.replace(self._key, MASK)
        return ServiceError(
            text,
            instance_id=self.id,
            service=SERVICE,
            kind=kind,
            status=status,
            retry_after=retry_after,
        )


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
