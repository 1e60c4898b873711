"""A helper module with per-instance state and a small class."""

from __future__ import annotations

CALLS = 0


def render(greeting: str, repeat: int, loud: bool) -> str:
    global CALLS
    CALLS += 1
    text = " ".join([greeting] * repeat)
    return text.upper() if loud else text


class Greeter:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __call__(self, name: str) -> str:
        return f"{self.text}, {name}"
