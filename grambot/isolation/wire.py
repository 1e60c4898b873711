"""Messages between the engine and an instance's child process: length-prefixed msgpack frames
(msgspec) over a Unix stream socket, read and written with asyncio streams.

A frame is a 4-byte big-endian length and that many bytes of one msgpack value. Neither side
accepts a frame over `MAX_FRAME` (16 MiB): the sender raises `FrameTooLarge` before writing
anything (the caller turns it into an error answer), and a reader that sees a bigger length
raises it instead of waiting for bytes that may never come.

Writes are not drained one by one: `send` appends to the transport's buffer and only waits
when the buffer is over its high-water mark, so many small messages (events) cost one write.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import msgspec

from grambot.errors import FrameTooLarge

__all__ = ["MAX_FRAME", "Channel", "FrameTooLarge", "decode", "encode"]

MAX_FRAME = 16 * 1024 * 1024
_HEADER = struct.Struct(">I")
_HIGH_WATER = 1024 * 1024


def _fallback(value: Any) -> Any:
    """What msgpack cannot carry natively travels as its text (a tool's `data`, say)."""
    return repr(value)


_encoder = msgspec.msgpack.Encoder(enc_hook=_fallback)
_decoder = msgspec.msgpack.Decoder()


def encode(message: Any) -> bytes:
    """The frame of `message` (header included); FrameTooLarge past MAX_FRAME."""
    body = _encoder.encode(message)
    if len(body) > MAX_FRAME:
        raise FrameTooLarge(len(body), MAX_FRAME)
    return _HEADER.pack(len(body)) + body


def decode(body: bytes) -> Any:
    return _decoder.decode(body)


class Channel:
    """One end of the pipe: `send` a message, `recv` the next (None at end of stream)."""

    __slots__ = ("_reader", "_writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        writer.transport.set_write_buffer_limits(high=_HIGH_WATER)

    @classmethod
    async def over(cls, sock: Any) -> Channel:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_FRAME + 64)
        return cls(reader, writer)

    def send_nowait(self, message: Any) -> None:
        """Queue `message` for writing (FrameTooLarge past MAX_FRAME; nothing is written)."""
        if self._writer.is_closing():
            raise ConnectionResetError("the pipe is closed")
        self._writer.write(encode(message))

    async def send(self, message: Any) -> None:
        self.send_nowait(message)
        if self._writer.transport.get_write_buffer_size() > _HIGH_WATER:
            await self._writer.drain()

    async def recv(self) -> Any | None:
        try:
            header = await self._reader.readexactly(_HEADER.size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        (size,) = _HEADER.unpack(header)
        if size > MAX_FRAME:
            raise FrameTooLarge(size, MAX_FRAME, "incoming message")
        try:
            body = await self._reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return decode(body)

    @property
    def closed(self) -> bool:
        return self._writer.is_closing()

    def close(self) -> None:
        self._writer.close()
