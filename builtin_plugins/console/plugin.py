"""The console connector: a chat over stdin/stdout, for trying grambot with no keys.

A daemon thread reads lines (a blocking read cannot be awaited portably: stdin may be a
terminal, a pipe or a file) and hands each to the engine's durable inbox (`api.inbox`), waiting
until it is accepted before it reads on. When stdin is not a
terminal it reads until EOF, so a session can be scripted: `printf 'hi\\n' | grambot run`.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from grambot import Attachment, IncomingMessage, Plugin, PluginApi


class Settings(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    chat_id: str = Field("console", alias="chatId", description="Chat id of the terminal chat.")
    sender: str = Field("you", description="Sender name given to incoming lines.")
    prompt: str = Field("you> ", description="Shown before each line on a terminal.")
    bot_prefix: str = Field("bot> ", alias="botPrefix", description="Put before each reply.")
    reply_wait: float = Field(
        60.0,
        alias="replyWaitSeconds",
        gt=0,
        description="On a terminal, how long to wait for a reply before prompting again.",
    )


class Console:
    def __init__(self, api: PluginApi) -> None:
        self.api = api
        self.settings: Settings = api.settings
        self.id = api.instance.instance_id
        self._stopped = threading.Event()
        self._replied = threading.Event()
        self._interactive = sys.stdin.isatty()
        self._sequence = 0
        self._run = f"{time.time_ns():x}"  # message ids stay unique across restarts
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- Connector -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        thread = threading.Thread(target=self._read, name=f"console-reader-{self.id}", daemon=True)
        thread.start()

    async def stop(self) -> None:
        self._stopped.set()

    async def send_message(
        self,
        chat_id: str,
        text: str,
        *,
        files: Sequence[Attachment] = (),
        reply_to: str | None = None,
    ) -> None:
        lines = [f"{self.settings.bot_prefix}{text}"]
        lines += [f"{self.settings.bot_prefix}[file] {f.path} ({f.mime_type})" for f in files]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        self._replied.set()

    # -- plugin lifecycle ----------------------------------------------------------------------

    async def load(self) -> None:
        # The engine calls start() once every instance of this reconcile has loaded.
        self.api.registrar.register_connector(self)

    def _read(self) -> None:
        if self._interactive:
            sys.stdout.write("Chat with the bot here: /help lists the commands, Ctrl-C stops.\n")
        while not self._stopped.is_set():
            if self._interactive:
                sys.stdout.write(self.settings.prompt)
                sys.stdout.flush()
            line = sys.stdin.readline()
            if not line:  # EOF
                self.api.logger.info("stdin closed: no more console input")
                return
            text = line.rstrip("\r\n")
            if not text.strip() or self._stopped.is_set():
                continue
            self._sequence += 1
            self._replied.clear()
            loop = self._loop
            if loop is None:
                return
            try:
                accepted = asyncio.run_coroutine_threadsafe(self._accept(text), loop)
                accepted.result(30)
            except Exception as exc:  # unloaded meanwhile, or the engine is stopping
                self.api.logger.warning("console line not taken (%s): %s", type(exc).__name__, text)
                return
            if self._interactive:
                self._replied.wait(self.settings.reply_wait)

    async def _accept(self, text: str) -> None:
        message = IncomingMessage(
            connector_id=self.id,
            chat_id=self.settings.chat_id,
            sender=self.settings.sender,
            text=text,
            message_id=f"{self._run}-{self._sequence}",
        )
        await self.api.inbox.accept(message)


plugin = Plugin(settings_schema=Settings, create=Console)
