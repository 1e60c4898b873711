"""Deprecated alias (moved in 0.2, removed in 0.3): import from `grambot`."""

from grambot.plugins._alias import alias

alias(__name__, "grambot.events.event")
