"""Keep the bot token out of logs.

The Bot API puts the token in every URL, and httpx logs each request URL at INFO (and
python-telegram-bot logs its base URL at DEBUG). A filter on those loggers rewrites the token to
`<botToken>` for as long as the instance runs.
"""

from __future__ import annotations

import logging

LOGGERS = (
    "httpx",
    "telegram.Bot",
    "telegram.request.BaseRequest",
    "telegram.request.HTTPXRequest",
)
MASK = "<botToken>"


class TokenFilter(logging.Filter):
    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is not ours to fix
            return True
        if self.token in message:
            record.msg = message.replace(self.token, MASK)
            record.args = ()
        return True

    def install(self) -> None:
        for name in LOGGERS:
            logging.getLogger(name).addFilter(self)

    def remove(self) -> None:
        for name in LOGGERS:
            logging.getLogger(name).removeFilter(self)


def scrub(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text
