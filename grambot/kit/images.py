"""Checking a generate() call, recognising and saving generated images (used by the
gpt-image and nanobanana built-ins)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence
from pathlib import Path

from grambot.registries.images import GeneratedImage

SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png", ".png"),
    (b"\xff\xd8\xff", "image/jpeg", ".jpg"),
    (b"GIF8", "image/gif", ".gif"),
)


def sniff(data: bytes) -> tuple[str, str] | None:
    """(mime type, suffix) of image bytes, or None when they are no image we know."""
    for magic, mime, suffix in SIGNATURES:
        if data.startswith(magic):
            return mime, suffix
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", ".webp"
    return None


def save(folder: Path, data: bytes, suffix: str, index: int) -> Path:
    """Write `data` to a new file in `folder` (created); never overwrites."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = folder / f"{stamp}-{secrets.token_hex(4)}-{index}{suffix}"
    with open(path, "xb") as handle:
        handle.write(data)
    return path


def request_problem(prompt: str, count: int, max_count: int) -> str | None:
    """What makes a generate(prompt, count=) call a `bad-request`, or None."""
    if not prompt or not prompt.strip():
        return "the prompt is empty"
    if not 1 <= count <= max_count:
        return f"count must be 1..{max_count} (got {count})"
    return None


async def save_all(
    folder: Path, found: Sequence[tuple[bytes, str, str]], logger: logging.Logger
) -> list[GeneratedImage]:
    """Save each (data, mime type, suffix) in `folder` (in a worker thread: disks can stall)."""
    images = []
    for index, (data, mime, suffix) in enumerate(found):
        path = await asyncio.to_thread(save, folder, data, suffix, index)
        images.append(GeneratedImage(path=path, mime_type=mime, size_bytes=len(data)))
    logger.info("saved %s image(s) in %s", len(images), folder)
    return images
