"""Splitting text to Telegram's limits (4096 for messages, 1024 for captions).

Telegram counts UTF-16 code units, so an emoji outside the BMP counts twice. Chunks break at the
last paragraph break, line break or space before the limit when there is one, and never inside
a surrogate pair (we cut Python characters, never code units).
"""

from __future__ import annotations

MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """`text` in chunks of at most `limit` UTF-16 units; nothing is lost but the whitespace at
    a break."""
    if limit < 2:
        raise ValueError("limit must be at least 2")
    chunks: list[str] = []
    rest = text
    while utf16_len(rest) > limit:
        cut = _max_prefix(rest, limit)
        window = rest[:cut]
        brk = -1
        for sep in ("\n\n", "\n", " "):
            at = window.rfind(sep)
            if at > cut // 2:  # do not make tiny chunks for a separator near the start
                brk = at
                break
        if brk == -1:
            chunk, rest = window, rest[cut:]
        else:
            chunk, rest = window[:brk], rest[brk:].lstrip("\n ")
        if chunk:
            chunks.append(chunk)
    if rest or not chunks:
        chunks.append(rest)
    return chunks


def _max_prefix(text: str, limit: int) -> int:
    """The longest prefix length (in characters) of `text` within `limit` UTF-16 units."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)
