"""The nanobanana built-in, driven through the engine against a fake Gemini generateContent."""

from __future__ import annotations

import time
from typing import Any

import pytest

from grambot import ImageProvider, ServiceError
from tests.builtin.conftest import Harness, closed_port_url, load_plugin_module
from tests.builtin.services import raises_clearly, service_failures
from tests.fakes.base import fake_fixture
from tests.fakes.gemini_api import FakeGemini
from tests.fakes.telegram_api import PNG_1PX

KEY = "AIza-test-gemini-key-13579"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 20


fake = fake_fixture(lambda: FakeGemini(KEY))


async def load(h: Harness, fake: FakeGemini, **extra: Any) -> ImageProvider:
    provider: ImageProvider = await h.load_service(
        "banana", "nanobanana", "images", KEY, **{"baseUrl": f"{fake.url}/v1beta", **extra}
    )
    return provider


async def test_images_come_back_as_saved_files(harness: Harness, fake: FakeGemini) -> None:
    provider = await load(harness, fake, aspectRatio="3:2")
    (image,) = await provider.generate("a banana")
    assert image.mime_type == "image/png" and image.path.read_bytes() == PNG_1PX
    assert image.size_bytes == len(PNG_1PX)
    assert image.path.parent == harness.workspace.data_dir("banana") / "images"
    request = fake.requests[-1]
    assert request.path == "/v1beta/models/gemini-2.5-flash-image:generateContent"
    assert request.headers["x-goog-api-key"] == KEY and "key" not in request.query
    assert fake.bodies[-1] == {
        "contents": [{"role": "user", "parts": [{"text": "a banana"}]}],
        "generationConfig": {
            "responseModalities": ["TEXT", "IMAGE"],
            "imageConfig": {"aspectRatio": "3:2"},
        },
    }


async def test_count_model_and_size_are_honoured(harness: Harness, fake: FakeGemini) -> None:
    provider = await load(harness, fake)
    fake.image_bytes = JPEG
    images = await provider.generate("two", count=2, size="1920x1080", model="gemini-x")
    assert [i.mime_type for i in images] == ["image/jpeg", "image/jpeg"]
    assert all(i.path.suffix == ".jpg" for i in images) and len({i.path for i in images}) == 2
    assert len(fake.requests) == 2
    assert fake.requests[-1].path == "/v1beta/models/gemini-x:generateContent"
    assert fake.bodies[-1]["generationConfig"]["imageConfig"] == {"aspectRatio": "16:9"}
    fake.images_per_call = 3
    assert len(await provider.generate("three", count=3)) == 3
    assert len(fake.requests) == 3  # one call gave all three


async def test_the_endpoint_override_is_used(harness: Harness, fake: FakeGemini) -> None:
    provider = await load(
        harness,
        fake,
        endpoint=f"{fake.url}/v1beta/models/{{model}}:generateContent",
        baseUrl="http://127.0.0.1:9/unused",
    )
    assert len(await provider.generate("x", model="m1")) == 1
    assert fake.requests[-1].path == "/v1beta/models/m1:generateContent"


def test_sizes_map_to_the_nearest_aspect_ratio() -> None:
    ratio = load_plugin_module("nanobanana", "ratios").aspect_ratio
    assert ratio("16:9") == "16:9" and ratio("1024x1024") == "1:1"
    assert ratio("1080x1920") == "9:16" and ratio("2560x1080") == "21:9"
    assert ratio("100:99") == "1:1"
    with pytest.raises(ValueError, match="aspect ratio"):
        ratio("big")


async def test_a_refusal_quotes_the_model(harness: Harness, fake: FakeGemini) -> None:
    provider = await load(harness, fake)
    fake.refuse = True
    with pytest.raises(ServiceError) as caught:
        await provider.generate("something forbidden")
    assert caught.value.kind == "refused"
    assert "IMAGE_SAFETY" in str(caught.value) and "I can't make that image." in str(caught.value)


async def test_a_429_with_a_retry_delay_is_retried(harness: Harness, fake: FakeGemini) -> None:
    provider = await load(harness, fake)
    fake.fail(429, headers={"retryDelay": "0.3s"})
    started = time.monotonic()
    assert len(await provider.generate("again")) == 1
    assert time.monotonic() - started >= 0.25 and len(fake.requests) == 2


@service_failures(
    "banana",
    auth=[
        (
            {"status": 400, "headers": {"apiKeyInvalid": "1"}},
            "auth",
            ["API key", "grambot secrets set banana apiKey"],
        ),
        ({"status": 403}, "auth", ["403"]),
    ],
    rate_limits=[
        (
            {"status": 429, "headers": {"retryDelay": "0.1s"}, "times": 2},
            "rate-limit",
            ["429", "wait 0.1 s"],
        ),
        ({"status": 429, "headers": {"retryDelay": "3600s"}}, "rate-limit", ["wait 3600 s"]),
    ],
    hang=2.0,
    malformed=[
        ({"malformed": b"{nope"}, "bad-response", ["not JSON"]),
        ({"malformed": b'{"what": 1}'}, "bad-response", ["not a generateContent reply"]),
        (
            {
                "malformed": b'{"candidates": [{"content": {"parts": [{"inlineData": '
                b'{"mimeType": "image/png", "data": "@@"}}]}}]}'
            },
            "bad-response",
            ["not base64"],
        ),
    ],
)
async def test_failures_are_clear_and_leave_the_instance_loaded(
    harness: Harness, fake: FakeGemini, script: dict[str, Any], kind: str, words: list[str]
) -> None:
    provider = await load(harness, fake, timeout=0.3)
    fake.play(script, secret_message=f"API key not valid: {KEY}", secret_status=400)
    await raises_clearly(
        harness, provider.generate("a cat"), (kind, "banana", "gemini"), words, KEY
    )
    assert len(await provider.generate("later")) == 1


async def test_settings_must_ask_for_images(harness: Harness) -> None:
    await harness.load("banana", "nanobanana", responseModalities=["TEXT"], secrets={"apiKey": KEY})
    assert "responseModalities" in harness.failure("banana")
    assert "must include IMAGE" in harness.failure("banana")


async def test_an_unreachable_service_is_a_network_error(harness: Harness) -> None:
    await harness.load(
        "banana", "nanobanana", secrets={"apiKey": KEY}, baseUrl=closed_port_url(), maxRetries=0
    )
    provider = harness.engine.registries.images.get("banana")
    assert provider is not None
    with pytest.raises(ServiceError) as caught:
        await provider.generate("x")
    assert caught.value.kind == "network" and "cannot reach" in str(caught.value)
