"""GptImageProvider: `generate(prompt, size=, count=, model=)` → saved files.

gpt-image models always answer with base64 data; dall-e models are asked for it
(`response_format=b64_json`), so nothing is ever fetched from a second URL.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from grambot import GeneratedImage, PluginApi, ServiceError
from grambot.kit.checks import model_ids
from grambot.kit.images import save, sniff
from grambot.kit.sdk import import_sdk
from grambot.kit.sdk_errors import call_sdk, scrub

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from .plugin import Settings

SERVICE = "openai images"
SIZE = re.compile(r"^(auto|[1-9][0-9]{1,4}x[1-9][0-9]{1,4})$")


class GptImageProvider:
    """A `grambot.ImageProvider`; registered under its instance id."""

    def __init__(self, api: PluginApi) -> None:
        self.api = api
        self.settings: Settings = api.settings
        self.id = api.instance.instance_id
        self.images_dir = api.data_dir / "images"
        self._client: AsyncOpenAI | None = None
        self._key: str | None = None
        self._sdk: Any = None

    async def load(self) -> None:
        await self.connect()
        self.api.registrar.register_image_provider(self)

    async def connect(self) -> None:
        """Read the key and make the SDK client (no request is sent)."""
        self._key = self.api.secrets.require("apiKey")
        self._sdk = await asyncio.to_thread(
            import_sdk, "openai", needed_by="the gpt-image built-in"
        )
        s = self.settings
        client = self._sdk.AsyncOpenAI(
            api_key=self._key,
            base_url=s.base_url,
            organization=s.organization,
            project=s.project,
            timeout=self._sdk.Timeout(s.timeout, connect=s.connect_timeout),
            max_retries=s.max_retries,
        )
        client.organization = s.organization  # not OPENAI_ORG_ID
        client.project = s.project  # not OPENAI_PROJECT_ID
        self._client = client

    async def check(self) -> str:
        """List the models: the key is checked and nothing is generated."""
        assert self._client is not None
        s = self.settings
        page = await call_sdk(
            self._client.models.list(),
            self._sdk,
            deadline=s.timeout,
            what="model list",
            instance_id=self.id,
            service=SERVICE,
            secret=self._key,
            base_url=s.base_url,
            timeout=s.timeout,
            retries=s.max_retries,
        )
        return model_ids(page)

    async def unload(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def generate(
        self, prompt: str, *, size: str | None = None, count: int = 1, model: str | None = None
    ) -> Sequence[GeneratedImage]:
        client = self._client
        if client is None:
            raise self._error("unavailable", "the image provider is not loaded")
        s = self.settings
        if not prompt or not prompt.strip():
            raise self._error("bad-request", "the prompt is empty")
        if not 1 <= count <= s.max_count:
            raise self._error("bad-request", f"count must be 1..{s.max_count} (got {count})")
        size = size or s.size
        if not SIZE.match(size):
            raise self._error("bad-request", f"size must be WIDTHxHEIGHT or auto (got {size!r})")
        model = model or s.model
        params: dict[str, Any] = {"model": model, "prompt": prompt, "n": count, "size": size}
        if s.quality != "auto" or model.startswith("gpt-image"):
            params["quality"] = s.quality
        if model.startswith("dall-e"):
            params["response_format"] = "b64_json"
        else:
            params["output_format"] = s.output_format
            if s.background:
                params["background"] = s.background
        result = await call_sdk(
            client.images.generate(**params),
            self._sdk,
            deadline=s.deadline,
            what="images",
            instance_id=self.id,
            service=SERVICE,
            secret=self._key,
            base_url=s.base_url,
            timeout=s.timeout,
            retries=s.max_retries,
        )
        return await self._save_all(result)

    async def _save_all(self, result: Any) -> list[GeneratedImage]:
        try:
            items = list(result.data or ())
            encoded = [item.b64_json for item in items]
        except (AttributeError, TypeError) as exc:
            raise self._bad(f"not an images API reply ({exc})") from None
        if not encoded:
            raise self._error("refused", "the service returned no image")
        images: list[GeneratedImage] = []
        for index, text in enumerate(encoded):
            if not isinstance(text, str) or not text:
                raise self._bad("an image came without b64_json data")
            try:
                data = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise self._bad("image data is not valid base64") from None
            kind = sniff(data)
            if kind is None:
                raise self._bad("image data is not a PNG, JPEG, WebP or GIF image")
            mime, suffix = kind
            path = await asyncio.to_thread(save, self.images_dir, data, suffix, index)
            images.append(GeneratedImage(path=path, mime_type=mime, size_bytes=len(data)))
        self.api.logger.info("saved %s image(s) in %s", len(images), self.images_dir)
        return images

    def _bad(self, text: str) -> ServiceError:
        return self._error(
            "bad-response", f"unexpected answer from {self.settings.base_url}: {text}"
        )

    def _error(self, kind: str, text: str) -> ServiceError:
        return ServiceError(scrub(text, self._key), instance_id=self.id, service=SERVICE, kind=kind)
