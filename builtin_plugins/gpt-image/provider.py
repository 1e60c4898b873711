"""GptImageProvider: `generate(prompt, size=, count=, model=)` → saved files.

gpt-image models always answer with base64 data; dall-e models are asked for it
(`response_format=b64_json`), so nothing is ever fetched from a second URL.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from grambot import GeneratedImage
from grambot.kit.images import request_problem, save_all, sniff
from grambot.kit.provider import ImageBase
from grambot.kit.sdk_provider import OpenAISdkProvider

if TYPE_CHECKING:
    from .plugin import Settings

SIZE = re.compile(r"^(auto|[1-9][0-9]{1,4}x[1-9][0-9]{1,4})$")


class GptImageProvider(ImageBase, OpenAISdkProvider):
    """A `grambot.ImageProvider`; registered under its instance id."""

    service = "openai images"
    needed_by = "the gpt-image built-in"
    settings: Settings

    async def generate(
        self, prompt: str, *, size: str | None = None, count: int = 1, model: str | None = None
    ) -> Sequence[GeneratedImage]:
        client = self.client
        s = self.settings
        problem = request_problem(prompt, count, s.max_count)
        if problem:
            raise self.error("bad-request", problem)
        size = size or s.size
        if not SIZE.match(size):
            raise self.error("bad-request", f"size must be WIDTHxHEIGHT or auto (got {size!r})")
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
        result = await self.call(client.images.generate(**params), "images")
        return await save_all(self.images_dir, self._decoded(result), self.api.logger)

    def _decoded(self, result: Any) -> list[tuple[bytes, str, str]]:
        try:
            items = list(result.data or ())
            encoded = [item.b64_json for item in items]
        except (AttributeError, TypeError) as exc:
            raise self.bad_response(f"not an images API reply ({exc})") from None
        if not encoded:
            raise self.error("refused", "the service returned no image")
        found = []
        for text in encoded:
            if not isinstance(text, str) or not text:
                raise self.bad_response("an image came without b64_json data")
            try:
                data = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise self.bad_response("image data is not valid base64") from None
            kind = sniff(data)
            if kind is None:
                raise self.bad_response("image data is not a PNG, JPEG, WebP or GIF image")
            found.append((data, *kind))
        return found
