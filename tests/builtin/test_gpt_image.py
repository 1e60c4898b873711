"""The gpt-image built-in, driven through the engine against a fake OpenAI images API (the real
openai SDK on the wire)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from grambot import ImageProvider, ServiceError
from tests.builtin.conftest import POISON, Harness
from tests.builtin.services import raises_clearly, service_failures
from tests.fakes.base import fake_fixture
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.telegram_api import PNG_1PX

KEY = "sk-proj-image-key-0987654321"


fake = fake_fixture(lambda: FakeOpenAI(KEY))


async def load(h: Harness, fake: FakeOpenAI, **extra: Any) -> ImageProvider:
    provider: ImageProvider = await h.load_service(
        "img", "gpt-image", "images", KEY, **{"baseUrl": f"{fake.url}/v1", **extra}
    )
    return provider


async def test_images_are_generated_and_saved_as_pngs(
    harness: Harness, fake: FakeOpenAI, poisoned_env: str
) -> None:
    provider = await load(harness, fake, quality="high")
    assert provider.id == "img"
    images = await provider.generate("a red square", count=2, size="1536x1024")
    assert len(images) == 2
    for image in images:
        assert image.mime_type == "image/png" and image.path.suffix == ".png"
        assert image.path.parent == harness.workspace.data_dir("img") / "images"
        assert image.path.read_bytes() == PNG_1PX and image.size_bytes == len(PNG_1PX)
    assert images[0].path != images[1].path
    body = fake.bodies[-1]
    assert body == {
        "model": "gpt-image-1",
        "prompt": "a red square",
        "n": 2,
        "size": "1536x1024",
        "quality": "high",
        "output_format": "png",
    }
    assert fake.requests[-1].path == "/v1/images/generations"
    assert fake.requests[-1].headers["authorization"] == f"Bearer {KEY}"
    assert POISON not in " ".join(fake.requests[-1].headers.values())


async def test_dall_e_models_are_asked_for_base64(harness: Harness, fake: FakeOpenAI) -> None:
    provider = await load(harness, fake)
    await provider.generate("x", model="dall-e-3")
    body = fake.bodies[-1]
    assert body["model"] == "dall-e-3" and body["response_format"] == "b64_json"
    assert "output_format" not in body


@pytest.mark.parametrize(
    ("call", "words"),
    [
        ({"prompt": "  "}, ["prompt is empty"]),
        ({"prompt": "x", "count": 9}, ["count must be 1..4"]),
        ({"prompt": "x", "size": "huge"}, ["size must be"]),
    ],
)
async def test_bad_calls_are_refused_before_any_request(
    harness: Harness, fake: FakeOpenAI, call: dict[str, Any], words: list[str]
) -> None:
    provider = await load(harness, fake)
    with pytest.raises(ServiceError) as caught:
        await provider.generate(**call)
    assert caught.value.kind == "bad-request"
    for word in words:
        assert word in str(caught.value)
    assert fake.requests == []


async def test_a_429_with_retry_after_is_retried(harness: Harness, fake: FakeOpenAI) -> None:
    provider = await load(harness, fake)
    fake.fail(429, headers={"retry-after": "0.3"})
    started = time.monotonic()
    assert len(await provider.generate("again")) == 1
    assert time.monotonic() - started >= 0.25


@service_failures(
    "img",
    rate_limits=[
        ({"status": 429, "headers": {"retry-after": "0.1"}, "times": 2}, "rate-limit", ["429"])
    ],
    malformed=[
        ({"malformed": b"{nope"}, "bad-response", ["not JSON"]),
        (
            {"malformed": b'{"created": 1, "data": [{"b64_json": "!!!"}]}'},
            "bad-response",
            ["not valid base64"],
        ),
        (
            {"malformed": b'{"created": 1, "data": [{"b64_json": "aGVsbG8="}]}'},
            "bad-response",
            ["not a PNG"],
        ),
        ({"malformed": b'{"created": 1, "data": []}'}, "refused", ["no image"]),
    ],
)
async def test_failures_are_clear_and_leave_the_instance_loaded(
    harness: Harness, fake: FakeOpenAI, script: dict[str, Any], kind: str, words: list[str]
) -> None:
    provider = await load(harness, fake, timeout=0.3)
    fake.play(script, secret_message=f"Incorrect API key provided: {KEY}")
    await raises_clearly(
        harness, provider.generate("a cat"), (kind, "img", "openai images"), words, KEY
    )
    assert len(await provider.generate("later")) == 1
