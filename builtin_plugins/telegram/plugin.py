"""The telegram built-in: a Connector on python-telegram-bot.

Secrets: `botToken` (from @BotFather). python-telegram-bot is imported when an instance loads,
never when this module is imported.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from grambot import Plugin, PluginApi

SECRETS = ("botToken",)


class Settings(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    allowed_user_ids: list[int] = Field(
        default_factory=list,
        alias="allowedUserIds",
        description="Telegram user ids whose messages are delivered. Messages from anyone not "
        "listed here (nor in a chat of allowedChatIds) are ignored and logged with their ids.",
    )
    allowed_chat_ids: list[int] = Field(
        default_factory=list,
        alias="allowedChatIds",
        description="Chat ids (groups, channels, private chats) whose messages are delivered.",
    )
    allow_everyone: bool = Field(
        False,
        alias="allowEveryone",
        description="Deliver messages from anyone. Off by default, so that strangers cannot "
        "spend the owner's API keys; with both allow-lists empty nothing is delivered.",
    )
    base_url: str = Field(
        "https://api.telegram.org/bot",
        alias="baseUrl",
        description="Bot API base URL; the token is appended (or replaces `{token}`). "
        "Set it for a self-hosted Bot API server.",
    )
    base_file_url: str = Field(
        "https://api.telegram.org/file/bot",
        alias="baseFileUrl",
        description="Bot API base URL for file downloads; the token is appended.",
    )
    clear_webhook: bool = Field(
        True,
        alias="clearWebhook",
        description="Delete a webhook set for this bot before polling (polling fails while one "
        "is set).",
    )
    drop_pending_updates: bool = Field(
        False,
        alias="dropPendingUpdates",
        description="With clearWebhook: drop the updates Telegram queued while the bot was away.",
    )
    poll_timeout: int = Field(
        30,
        ge=0,
        le=50,
        alias="pollTimeout",
        description="Long-polling wait of one getUpdates call, in seconds.",
    )
    request_timeout: float = Field(
        10.0,
        gt=0,
        alias="requestTimeout",
        description="Read/write timeout of one Bot API request, in seconds.",
    )
    connect_timeout: float = Field(
        5.0, gt=0, alias="connectTimeout", description="Connect timeout, in seconds."
    )
    max_retries: int = Field(
        4,
        ge=0,
        le=20,
        alias="maxRetries",
        description="Retries of a send after a network error or flood control (429).",
    )
    backoff_initial: float = Field(
        1.0,
        gt=0,
        alias="backoffInitial",
        description="First wait after a network error, in seconds; doubles each time.",
    )
    backoff_max: float = Field(
        30.0, gt=0, alias="backoffMax", description="Longest wait between retries, in seconds."
    )
    max_retry_after: float = Field(
        60.0,
        ge=0,
        alias="maxRetryAfter",
        description="Longest flood-control wait (429 retry_after) a send accepts, in seconds; "
        "a longer one fails the send at once.",
    )
    download_files: bool = Field(
        True,
        alias="downloadFiles",
        description="Download incoming photos and documents into the data dir as attachments.",
    )
    max_download_bytes: int = Field(
        20_000_000,
        gt=0,
        alias="maxDownloadBytes",
        description="Incoming files larger than this are not downloaded.",
    )


def create(api: PluginApi) -> Any:
    from .connector import TelegramConnector

    return TelegramConnector(api)


async def check(api: PluginApi) -> str:
    """A live check (`grambot check`): one cheap request with this instance's credentials."""
    from grambot.kit.checks import run_check

    from .connector import TelegramConnector

    return await run_check(TelegramConnector(api))


plugin = Plugin(settings_schema=Settings, create=create, check=check)
