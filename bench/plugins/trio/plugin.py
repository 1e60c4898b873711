"""Entry module of the benchmark plugin: imports its two siblings relatively."""

from __future__ import annotations

from typing import Any

from grambot import Plugin

from .helper import Greeter, render
from .models import Settings


class Trio:
    def __init__(self, api: Any) -> None:
        self.api = api
        self.greeter: Greeter | None = None

    async def load(self) -> None:
        s: Settings = self.api.settings
        self.greeter = Greeter(render(s.greeting, s.repeat, s.loud))

    async def unload(self) -> None:
        self.greeter = None


def create(api: Any) -> Trio:
    return Trio(api)


plugin = Plugin(settings_schema=Settings, create=create)
