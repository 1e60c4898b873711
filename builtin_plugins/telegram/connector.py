"""TelegramConnector: long polling in, sendMessage/sendPhoto out, on python-telegram-bot's Bot.

Delivery is at least once: an update is handled (accepted into the engine's durable inbox, which
deduplicates it, or ignored as not allowed) and only then is its id saved as the polling
position, once per batch of updates, so the next getUpdates confirms it to Telegram; a restart
resumes after it and drops anything at or below it. Sends retry network errors with capped
exponential backoff and obey flood control (429 `retry_after`). Every error that leaves this
module is a `grambot.ServiceError` whose text never contains the token.
"""

from __future__ import annotations

import asyncio
import contextvars
import mimetypes
import warnings
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from grambot import (
    Attachment,
    IncomingMessage,
    PluginApi,
    ServiceError,
)
from grambot.files import write_atomic
from grambot.kit.sdk import import_sdk
from grambot.retry import RetryPolicy, retry_after

from .offsets import OffsetStore
from .redact import TokenFilter, scrub
from .text import CAPTION_LIMIT, split_text, utf16_len

if TYPE_CHECKING:
    from telegram import Bot, Message, Update

    from .plugin import Settings

T = TypeVar("T")
SERVICE = "telegram"
MAX_HANDLE_ATTEMPTS = 3
# settings reconfigure() applies without a reload (field names of Settings)
IN_PLACE = frozenset(
    {
        "allowed_user_ids",
        "allowed_chat_ids",
        "allow_everyone",
        "poll_timeout",
        "max_retries",
        "backoff_initial",
        "backoff_max",
        "max_retry_after",
        "download_files",
        "max_download_bytes",
    }
)  # an update whose handling keeps failing is skipped after this many

# The HTTP status of the last Bot API answer in this task: python-telegram-bot folds 5xx into
# NetworkError with the server's description, and we want to tell a 5xx from a dropped line.
_last_status: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "telegram_last_status", default=None
)


class TelegramConnector:
    """A `grambot.Connector`; registered under its instance id."""

    def __init__(self, api: PluginApi) -> None:
        self.api = api
        self.settings: Settings = api.settings
        self.instance_id = api.instance.instance_id
        self.log = api.logger
        self.offsets = OffsetStore(api.data_dir, api.logger)
        self.files_dir = api.data_dir / "files"
        self._bot: Bot | None = None
        self._token: str | None = None
        self._filter: TokenFilter | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._handle_failures: dict[int, int] = {}
        self.bot_username: str | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def load(self) -> None:
        token = self.api.secrets.require("botToken")
        self._token = token
        self._filter = TokenFilter(token)
        self._filter.install()
        try:
            # The import takes a while: keep the event loop (other instances) running meanwhile.
            await asyncio.to_thread(import_sdk, "telegram", needed_by="the telegram built-in")
            _quiet_retry_after_deprecation()
            self._bot = self._make_bot(token)
            bot = self._bot
            await self._call("getMe", bot.initialize, retries=min(2, self.settings.max_retries))
            me = bot.bot
            self.bot_username = me.username
            if self.settings.clear_webhook:
                drop = self.settings.drop_pending_updates
                await self._call(
                    "deleteWebhook", lambda: bot.delete_webhook(drop_pending_updates=drop)
                )
            self.offsets.load(me.id)
            # Polling starts in start(), which the engine calls once the whole reconcile has
            # loaded: messages waiting at Telegram must not arrive before the providers do.
            self.api.registrar.register_connector(self)
        except BaseException:
            await self._close()
            raise
        self.log.info("telegram bot @%s ready", self.bot_username)

    async def unload(self) -> None:
        await self.stop()
        await self._close()

    def reconfigure(self, settings: Settings) -> bool:
        """Apply a change of the allowlists, the long-poll timeout, retries or downloads in
        place, without dropping the long poll; anything else (URLs, request timeouts, webhook
        handling) needs a reload (False)."""
        old = self.settings.model_dump()
        changed = {k for k, v in settings.model_dump().items() if old.get(k) != v}
        if not changed <= IN_PLACE:
            return False
        self.settings = settings
        self.log.info("settings changed in place: %s", ", ".join(sorted(changed)))
        return True

    async def connect(self) -> None:
        """Read the token and make the Bot (no request is sent)."""
        token = self.api.secrets.require("botToken")
        self._token = token
        await asyncio.to_thread(import_sdk, "telegram", needed_by="the telegram built-in")
        _quiet_retry_after_deprecation()
        self._bot = self._make_bot(token)

    async def check(self) -> str:
        """getMe: the token is checked; nothing is polled, no webhook is touched."""
        bot = self._require_bot()
        await self._call("getMe", bot.initialize, retries=0)
        return f"the token works: bot @{bot.bot.username}"

    async def start(self) -> None:
        """Start polling (idempotent)."""
        if self._bot is None:
            raise self._error("unavailable", "the connector is not loaded")
        if self._poll_task is None or self._poll_task.done():
            self._poll_task = asyncio.create_task(
                self._poll(), name=f"telegram-poll-{self.instance_id}"
            )
            self.log.info(
                "telegram bot @%s polling (resuming after update %s)",
                self.bot_username,
                self.offsets.last_update_id,
            )

    async def stop(self) -> None:
        """Stop polling; returns once the polling task is gone (a long poll is cancelled)."""
        task, self._poll_task = self._poll_task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being cancelled ourselves, not just the poller
        except Exception:  # the poller's own failure was logged where it happened
            pass

    async def _close(self) -> None:
        bot, self._bot = self._bot, None
        try:
            if bot is not None:
                await bot.shutdown()
        finally:
            if self._filter is not None:
                self._filter.remove()
                self._filter = None

    def _make_bot(self, token: str) -> Bot:
        from telegram import Bot
        from telegram.request import HTTPXRequest

        s = self.settings

        class StatusRecordingRequest(HTTPXRequest):
            async def do_request(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
                code, payload = await super().do_request(*args, **kwargs)
                _last_status.set(code)
                return code, payload

        def request(pool: int) -> HTTPXRequest:
            return StatusRecordingRequest(
                connection_pool_size=pool,
                read_timeout=s.request_timeout,
                write_timeout=s.request_timeout,
                connect_timeout=s.connect_timeout,
                pool_timeout=s.request_timeout,
                media_write_timeout=max(s.request_timeout, 20.0),
            )

        return Bot(
            token,
            base_url=s.base_url,
            base_file_url=s.base_file_url,
            request=request(8),
            get_updates_request=request(1),
        )

    # -- receiving -------------------------------------------------------------------------

    async def _poll(self) -> None:
        from telegram.error import InvalidToken, TelegramError

        poll_errors = 0  # in a row, not counting flood control (it says how long to wait)
        while True:
            s = self.settings  # read each time: reconfigure() may change it in place
            bot = self._bot
            if bot is None:
                return
            try:
                updates = await bot.get_updates(
                    offset=self.offsets.next_offset(),
                    timeout=s.poll_timeout,
                    allowed_updates=["message"],
                )
            except TelegramError as exc:
                self.api.health.error(self._describe(exc), "getUpdates")
                wait = _retry_after(exc)
                if wait is None:
                    poll_errors += 1
                    wait = _backoff(s).delay(poll_errors)
                level = self.log.error if isinstance(exc, InvalidToken) else self.log.warning
                level(
                    "getUpdates failed (%s); polling again in %.1f s",
                    self._describe(exc),
                    wait,
                )
                await asyncio.sleep(wait)
                continue
            except Exception as exc:  # the poller must outlive any surprise; say what it was
                self.api.health.error(self._describe(exc), "getUpdates")
                poll_errors += 1
                wait = _backoff(s).delay(poll_errors)
                self.log.exception("getUpdates failed unexpectedly; polling again in %.1f s", wait)
                await asyncio.sleep(wait)
                continue
            self.api.health.ok("poll")
            poll_errors = 0
            last: int | None = None  # the last update in the inbox (or ignored) of this batch
            for update in updates:
                if self.offsets.is_duplicate(update.update_id):
                    self.log.debug("dropping duplicate update %s", update.update_id)
                    continue
                try:
                    await self._handle(update)
                except Exception as exc:
                    failures = self._handle_failures.get(update.update_id, 0) + 1
                    self._handle_failures[update.update_id] = failures
                    if failures < MAX_HANDLE_ATTEMPTS:
                        self.log.warning(
                            "update %s: handling failed (%s); trying again",
                            update.update_id,
                            self._describe(exc),
                        )
                        await asyncio.sleep(_backoff(s).delay(failures))
                        break  # poll again from this update
                    self.log.error(
                        "update %s: handling failed %s times (%s); skipping it",
                        update.update_id,
                        failures,
                        self._describe(exc),
                    )
                self._handle_failures.pop(update.update_id, None)
                last = update.update_id
            if last is not None:  # everything up to it is in the inbox: confirm it upstream
                await asyncio.to_thread(self.offsets.save, last)

    async def _handle(self, update: Update) -> None:
        message = update.message
        if message is None:
            return
        user = message.from_user
        chat = message.chat
        if not self._allowed(user.id if user else None, chat.id):
            self.log.info(
                "ignored a message from user %s (%s) in chat %s: not in allowedUserIds / "
                "allowedChatIds",
                user.id if user else None,
                user.username if user and user.username else "-",
                chat.id,
            )
            return
        attachments = await self._attachments(message) if self.settings.download_files else ()
        incoming = IncomingMessage(
            connector_id=self.instance_id,
            chat_id=str(chat.id),
            sender=str(user.id) if user else str(chat.id),
            text=message.text or message.caption or "",
            message_id=str(message.message_id),
            attachments=attachments,
            extra={
                "updateId": update.update_id,
                "senderName": user.full_name if user else chat.title,
                "username": user.username if user else None,
                "chatType": chat.type,
                "date": message.date.isoformat() if message.date else None,
                "replyTo": (
                    str(message.reply_to_message.message_id) if message.reply_to_message else None
                ),
            },
        )
        await self.api.inbox.accept(incoming)  # durable (deduplicated) before confirming

    def _allowed(self, user_id: int | None, chat_id: int) -> bool:
        s = self.settings
        if s.allow_everyone:
            return True
        return (user_id is not None and user_id in s.allowed_user_ids) or (
            chat_id in s.allowed_chat_ids
        )

    async def _attachments(self, message: Message) -> tuple[Attachment, ...]:
        wanted: list[tuple[str, str, str | None, int | None]] = []  # file_id, mime, name, size
        if message.photo:
            largest = message.photo[-1]
            wanted.append((largest.file_id, "image/jpeg", None, largest.file_size))
        if message.document:
            doc = message.document
            mime = doc.mime_type or "application/octet-stream"
            wanted.append((doc.file_id, mime, doc.file_name, doc.file_size))
        attachments = []
        for file_id, mime, name, size in wanted:
            if size is not None and size > self.settings.max_download_bytes:
                self.log.info(
                    "message %s: file of %s bytes not downloaded", message.message_id, size
                )
                continue
            attachments.append(await self._download(message, file_id, mime, name))
        return tuple(attachments)

    async def _download(
        self, message: Message, file_id: str, mime: str, name: str | None
    ) -> Attachment:
        bot = self._require_bot()
        tg_file = await self._call("getFile", lambda: bot.get_file(file_id))
        data = await self._call("download", tg_file.download_as_bytearray)
        if tg_file.file_path and "." in tg_file.file_path.rsplit("/", 1)[-1]:
            suffix = "." + tg_file.file_path.rsplit(".", 1)[-1]
            guessed = mimetypes.guess_type("x" + suffix)[0]
            if guessed and mime == "image/jpeg":
                mime = guessed
        else:
            suffix = mimetypes.guess_extension(mime) or ".bin"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        path = self.files_dir / f"{message.chat.id}-{message.message_id}-{file_id[-16:]}{suffix}"
        # Whole or not at all, and on disk before the message that names it is in the inbox.
        await asyncio.to_thread(write_atomic, path, bytes(data), mode=None)
        return Attachment(path=path, mime_type=mime, name=name or path.name)

    # -- sending ---------------------------------------------------------------------------

    async def send_message(
        self,
        chat_id: str,
        text: str,
        *,
        files: Sequence[Attachment] = (),
        reply_to: str | None = None,
    ) -> None:
        """Send `text` (split at 4096) and `files` (photos for images, documents otherwise).

        A single file with a short text goes out as one captioned message. Raises ServiceError.
        Reports to `api.health` (ok "send", or the error).
        """
        try:
            await self._send(chat_id, text, files, reply_to)
        except ServiceError as exc:
            self.api.health.error(exc.detail, "sending")
            raise
        self.api.health.ok("send")

    async def _send(
        self, chat_id: str, text: str, files: Sequence[Attachment], reply_to: str | None
    ) -> None:
        from telegram import ReplyParameters

        bot = self._require_bot()
        reply: Any = None
        if reply_to and reply_to.isdigit():  # Telegram message ids; anything else: no reply
            reply = ReplyParameters(message_id=int(reply_to), allow_sending_without_reply=True)
        caption: str | None = None
        if len(files) == 1 and text and utf16_len(text) <= CAPTION_LIMIT:
            caption, text = text, ""
        for chunk in split_text(text) if text else ():
            await self._call(
                "sendMessage",
                lambda chunk=chunk, reply=reply: bot.send_message(
                    chat_id, chunk, reply_parameters=reply
                ),
            )
            reply = None
        for attachment in files:
            await self._send_file(bot, chat_id, attachment, caption, reply)
            caption = reply = None

    async def _send_file(
        self, bot: Bot, chat_id: str, attachment: Attachment, caption: str | None, reply: Any
    ) -> None:
        path = Path(attachment.path)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise self._error("bad-request", f"cannot read {path}: {exc.strerror}") from None
        name = attachment.name or path.name
        if attachment.mime_type.startswith("image/") and attachment.mime_type != "image/gif":
            await self._call(
                "sendPhoto",
                lambda: bot.send_photo(
                    chat_id, data, caption=caption, filename=name, reply_parameters=reply
                ),
            )
        else:
            await self._call(
                "sendDocument",
                lambda: bot.send_document(
                    chat_id, data, caption=caption, filename=name, reply_parameters=reply
                ),
            )

    # -- calls, retries, errors ----------------------------------------------------------

    async def _call(
        self, what: str, make: Callable[[], Awaitable[T]], *, retries: int | None = None
    ) -> T:
        """Run a Bot API call; retry network errors and flood control; map errors."""
        from telegram.error import (
            BadRequest,
            Forbidden,
            InvalidToken,
            NetworkError,
            RetryAfter,
            TelegramError,
            TimedOut,
        )

        s = self.settings
        retries = s.max_retries if retries is None else retries
        backoff = _backoff(s)
        attempt = 0
        while True:
            _last_status.set(None)
            delay = backoff.delay(attempt + 1)
            try:
                return await make()
            except RetryAfter as exc:
                wait = _retry_after(exc) or delay
                if attempt >= retries or wait > s.max_retry_after:
                    raise self._error(
                        "rate-limit",
                        f"{what}: flood control (429), retry after {wait:g} s",
                        status=429,
                        retry_after=wait,
                    ) from None
            except (InvalidToken, Forbidden) as exc:
                status = 403 if isinstance(exc, Forbidden) else 401
                hint = (
                    f"; check the token with `grambot secrets set {self.instance_id} botToken`"
                    if status == 401
                    else ""
                )
                refused = "the bot token was rejected" if status == 401 else "access denied"
                raise self._error(
                    "auth",
                    f"{what}: {refused} ({status}: {self._describe(exc)}){hint}",
                    status=status,
                ) from None
            except BadRequest as exc:
                raise self._error(
                    "bad-request", f"{what}: {self._describe(exc)}", status=400
                ) from None
            except TimedOut as exc:
                wait = delay
                if attempt >= retries:
                    raise self._error(
                        "timeout", f"{what}: no answer in time ({self._describe(exc)})"
                    ) from None
            except NetworkError as exc:
                # python-telegram-bot maps 5xx and connection failures to NetworkError
                wait = delay
                if attempt >= retries:
                    status = _last_status.get()
                    if status is not None and status >= 500:
                        raise self._error(
                            "server",
                            f"{what}: server error {status} ({self._describe(exc)})",
                            status=status,
                        ) from None
                    raise self._error(
                        "network",
                        f"{what}: cannot reach {s.base_url} ({self._describe(exc)})",
                    ) from None
            except TelegramError as exc:  # e.g. a body that is not the Bot API's JSON
                raise self._error("bad-response", f"{what}: {self._describe(exc)}") from None
            attempt += 1
            self.log.warning("%s failed; retry %s/%s in %.1f s", what, attempt, retries, wait)
            await asyncio.sleep(wait)

    def _require_bot(self) -> Bot:
        if self._bot is None:
            raise self._error("unavailable", "the connector is not running")
        return self._bot

    def _describe(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        if len(text) > 300:
            text = text[:297] + "..."
        return scrub(f"{type(exc).__name__}: {text}", self._token)

    def _error(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> ServiceError:
        return ServiceError(
            scrub(message, self._token),
            instance_id=self.instance_id,
            service=SERVICE,
            kind=kind,
            status=status,
            retry_after=retry_after,
        )


def _quiet_retry_after_deprecation() -> None:
    """python-telegram-bot 22 reads its own deprecated int `RetryAfter.retry_after` while building
    the exception, warning on every 429 (a UserWarning, shown by default). We read the value as a
    timedelta; silence exactly that message, nothing else."""
    from telegram.warnings import PTBDeprecationWarning

    warnings.filterwarnings(
        "ignore",
        message=r"Deprecated since version \S+: In a future major version attribute `retry_after`",
        category=PTBDeprecationWarning,
    )


def _backoff(s: Settings) -> RetryPolicy:
    """The plain doubling from `backoffInitial` up to `backoffMax` (no jitter: one bot)."""
    return RetryPolicy(initial=s.backoff_initial, cap=s.backoff_max, jitter=0.0)


def _retry_after(exc: BaseException) -> float | None:
    """Seconds of a RetryAfter, read without python-telegram-bot's deprecation warning."""
    asked = retry_after(getattr(exc, "_retry_after", None))
    if asked is None and hasattr(exc, "retry_after"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            asked = retry_after(exc.retry_after)
    return asked
