"""The bot: routes connector messages to inference, tools and images, and replies. It attaches
to an engine from outside: `attach_bot(engine)`."""

from grambot.bot.attach import attach_bot
from grambot.bot.router import Bot

__all__ = ["Bot", "attach_bot"]
