"""The bot: routes connector messages to inference, tools and images, and replies."""

from grambot.bot.router import Bot

__all__ = ["Bot"]
