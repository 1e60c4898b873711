"""Imports an SDK in load(), the cost shape of the telegram and anthropic built-ins."""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import BaseModel

from grambot import Plugin


class Settings(BaseModel):
    module: str = "telegram"


class Probe:
    def __init__(self, api: Any) -> None:
        self.api = api

    def load(self) -> None:  # sync: runs in a stage worker thread, off the loop
        importlib.import_module(self.api.settings.module)


plugin = Plugin(settings_schema=Settings, create=Probe)
