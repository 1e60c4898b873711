"""Recognising and saving generated images (used by the gpt-image and nanobanana built-ins)."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

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
