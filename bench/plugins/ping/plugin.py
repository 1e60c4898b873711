"""On load, sends `grambot <seq>` to 127.0.0.1:<port> so the benchmark sees the moment."""

from __future__ import annotations

import socket
from typing import Any

from pydantic import BaseModel

from grambot import Plugin


class Settings(BaseModel):
    port: int
    seq: int = 0


class Ping:
    def __init__(self, api: Any) -> None:
        self.api = api

    async def load(self) -> None:
        s: Settings = self.api.settings
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(f"grambot {s.seq}".encode(), ("127.0.0.1", s.port))


plugin = Plugin(settings_schema=Settings, create=Ping)
