"""The console connector: a chat over stdin/stdout, for trying grambot with no keys.

It reads with the event loop, in a task of its own, and no thread of it outlives it:

* on a terminal, with prompt_toolkit's `prompt_async` (line editing and history), under
  `patch_stdout`, so that replies and log lines are printed above the prompt, never into it.
  Ctrl-C at the prompt stops the engine (the terminal is in raw mode while the prompt waits, so
  no SIGINT comes: the console asks the engine to stop instead);
* on a pipe (or a socket, or a character device like /dev/null), with `loop.connect_read_pipe`
  on a duplicate of stdin; from a regular file, in chunks between which the loop runs on.

At the end of the input (EOF on a pipe, Ctrl-D on a terminal), when it is the only connector,
it asks the engine to stop (`api.request_stop`): the orderly shutdown lets the bot finish the
replies it holds, so `printf 'hi\\n' | grambot run` answers and exits 0 (it waits for the bot
to finish its lines first). With another connector
(Telegram, say) the engine keeps running. Each line goes to the engine's durable inbox
(`api.inbox`); the next is read once it is accepted.

prompt_toolkit is imported only when a console instance reads from a terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
import time
from collections.abc import AsyncIterator, Sequence

from pydantic import BaseModel, ConfigDict, Field

from grambot import Attachment, IncomingMessage, Plugin, PluginApi

MAX_LINE = 1024 * 1024  # a longer line is skipped (with a warning), not buffered forever
HINT = "Chat with the bot here: /help lists the commands, Ctrl-C stops."


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
        description="How long to wait for a reply: on a terminal before prompting again, at the "
        "end of piped input before stopping anyway.",
    )


class Console:
    def __init__(self, api: PluginApi) -> None:
        self.api = api
        self.settings: Settings = api.settings
        self.id = api.instance.instance_id
        self._task: asyncio.Task[None] | None = None
        self._replied = asyncio.Event()
        self._sequence = 0
        self._session = f"{time.time_ns():x}"  # message ids stay unique across restarts

    # -- Connector -----------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name=f"console-reader-{self.id}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=2.0)

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

    # -- reading -------------------------------------------------------------------------------

    async def _run(self) -> None:
        stdin = sys.stdin
        try:
            fd = stdin.fileno() if stdin is not None else -1
            mode = os.fstat(fd).st_mode
        except (OSError, ValueError):
            self.api.logger.info("no stdin: the console reads nothing")
            return
        if os.isatty(fd):
            ended = await self._terminal()
        else:
            ended = await self._stream(fd, mode)
        self.api.logger.info("stdin closed: no more console input (%s)", ended)
        if ended == "Ctrl-C":
            self.api.request_stop("Ctrl-C at the console")
        else:
            await self._answered()
            self.api.request_stop(f"console input ended ({ended})", unless_other_connectors=True)

    async def _answered(self) -> None:
        """Wait until the bot has finished every line of this console (the inbox keeps them
        durably; a shutdown would leave them for the next start), or made no progress for
        `replyWaitSeconds` (no model answers, say)."""
        loop = asyncio.get_running_loop()
        left, since = await self.api.inbox.outstanding(), loop.time()
        while left:
            await asyncio.sleep(0.02)
            now_left = await self.api.inbox.outstanding()
            if now_left < left:
                left, since = now_left, loop.time()
            elif loop.time() - since > self.settings.reply_wait:
                self.api.logger.warning(
                    "%d console line(s) still unanswered after %.0f s",
                    left,
                    self.settings.reply_wait,
                )
                return

    async def _terminal(self) -> str:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.patch_stdout import patch_stdout

        session: PromptSession[str] = PromptSession(reserve_space_for_menu=0)
        with patch_stdout():
            sys.stdout.write(HINT + "\n")
            while True:
                try:
                    text = await session.prompt_async(self.settings.prompt)
                except EOFError:
                    return "Ctrl-D"
                except KeyboardInterrupt:
                    return "Ctrl-C"
                if text.strip():
                    await self._deliver(text)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._replied.wait(), self.settings.reply_wait)

    async def _stream(self, fd: int, mode: int) -> str:
        lines = _file_lines(fd) if stat.S_ISREG(mode) else self._pipe_lines(fd)
        async with contextlib.aclosing(lines):  # closed at once when this task is cancelled
            async for line in lines:
                text = line.decode("utf-8", errors="replace").rstrip("\r\n")
                if text.strip():
                    await self._deliver(text)
        return "end of file" if stat.S_ISREG(mode) else "EOF"

    async def _pipe_lines(self, fd: int) -> AsyncIterator[bytes]:
        """Lines of a pipe, read by the loop from a duplicate of `fd` (closing it on the way
        out leaves stdin itself open for a console loaded after this one)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_LINE)
        pipe = os.fdopen(os.dup(fd), "rb", buffering=0)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than MAX_LINE: dropped
                    self.api.logger.warning("skipped a line longer than %d bytes", MAX_LINE)
                    continue
                if not line:
                    return
                yield line
        finally:
            transport.close()
            with contextlib.suppress(OSError):  # the pipe was made non-blocking: undo it
                os.set_blocking(fd, True)

    async def _deliver(self, text: str) -> None:
        """Hand a line to the durable inbox; the next line is read once it is accepted."""
        self._sequence += 1
        self._replied.clear()
        message = IncomingMessage(
            connector_id=self.id,
            chat_id=self.settings.chat_id,
            sender=self.settings.sender,
            text=text,
            message_id=f"{self._session}-{self._sequence}",
        )
        await self.api.inbox.accept(message)


async def _file_lines(fd: int) -> AsyncIterator[bytes]:
    """Lines of a regular file (reads never block), giving the loop a turn between chunks."""
    pending = b""
    while chunk := os.read(fd, 65536):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line
        await asyncio.sleep(0)
    if pending:
        yield pending


plugin = Plugin(settings_schema=Settings, create=Console)
