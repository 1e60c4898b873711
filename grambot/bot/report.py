"""One info line per message the bot handled: who, which model, which tools, how long, how many
tokens; the texts only when the operator asked for them (`grambot run --log-messages`).

    INFO grambot.bot: handled a message of chat tg/42 in 1.31 s (model brain/claude-x, tools:
         web_search; 812 tokens in, 95 out)

In JSON the figures are fields of the line (docs/logging.md): `event` "message.handled",
`connector`, `chat`, `model`, `tools`, `latency` (seconds from the start of the turn to the
reply sent), `queued` (seconds from acceptance to the start), `tokens` {"in", "out"}, `sent`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from grambot.registries.connectors import IncomingMessage
from grambot.registries.inference import InferenceResponse

__all__ = ["TurnStats", "log_handled"]

logger = logging.getLogger("grambot.bot")


@dataclass
class TurnStats:
    """What one turn used, filled while it runs."""

    provider: str | None = None
    model: str | None = None
    tools: list[str] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    command: str | None = None

    def add_response(self, provider: str, asked_model: str | None, r: InferenceResponse) -> None:
        self.provider = provider
        self.model = r.model or asked_model or self.model
        self.tokens_in += r.usage.input_tokens
        self.tokens_out += r.usage.output_tokens
        self.tools += [call.name for call in r.tool_calls]


def log_handled(
    message: IncomingMessage,
    stats: TurnStats,
    *,
    started: float,
    accepted_at: float | None,
    sent: bool,
    reply: str,
    with_texts: bool,
) -> None:
    """The message's line, at info (warning when the reply could not be sent)."""
    latency = round(time.monotonic() - started, 3)
    queued = round(max(0.0, time.time() - latency - accepted_at), 3) if accepted_at else None
    chat = f"{message.connector_id}/{message.chat_id}"
    if stats.command is not None:
        what = f"command /{stats.command}"
    elif stats.provider is not None:
        what = f"model {stats.provider}" + (f"/{stats.model}" if stats.model else "")
    else:
        what = "no model"
    details = [what]
    if stats.tools:
        details.append(f"tools: {', '.join(stats.tools)}")
    if stats.tokens_in or stats.tokens_out:
        details.append(f"{stats.tokens_in} tokens in, {stats.tokens_out} out")
    fields: dict[str, object] = {
        "event": "message.handled",
        "connector": message.connector_id,
        "chat": message.chat_id,
        "model": stats.model,
        "provider": stats.provider,
        "command": stats.command,
        "tools": stats.tools,
        "latency": latency,
        "queued": queued,
        "sent": sent,
    }
    if stats.tokens_in or stats.tokens_out:
        fields["tokens"] = {"in": stats.tokens_in, "out": stats.tokens_out}
    texts = ""
    if with_texts:
        fields["text"], fields["reply"] = message.text, reply
        texts = f": {message.text!r} -> {reply!r}"
    outcome = "handled" if sent else "could not send the reply to"
    logger.log(
        logging.INFO if sent else logging.WARNING,
        "%s a message of chat %s in %.2f s (%s)%s",
        outcome,
        chat,
        latency,
        "; ".join(details),
        texts,
        extra=fields,
    )
