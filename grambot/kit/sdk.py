"""The optional SDKs of the built-ins, and how a plugin imports one it may not have.

The core install carries no chat or model SDK; each comes with an extra of grambot:

    module      extra                      built-ins
    telegram    grambot[telegram]          telegram
    anthropic   grambot[anthropic]         anthropic
    openai      grambot[openai]            openai-codex, gpt-image
    keyring     grambot[keyring]           (the "keyring" secrets backend)

`import_sdk(module)` imports one, or raises `grambot.MissingDependency` naming the
`pip install` that brings it: the instance fails with the reason `missing-dependency` and is
not retried (installing the package, then `grambot retry ID`, fixes it).
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from grambot.errors import MissingDependency

__all__ = ["EXTRAS", "PLUGIN_SDKS", "import_sdk", "install_hint", "missing_sdk"]

EXTRAS: dict[str, str] = {
    "telegram": "telegram",
    "anthropic": "anthropic",
    "openai": "openai",
    "keyring": "keyring",
}

# built-in plugin id -> the SDK module it imports when an instance loads
PLUGIN_SDKS: dict[str, str] = {
    "telegram": "telegram",
    "anthropic": "anthropic",
    "openai-codex": "openai",
    "gpt-image": "openai",
}


def install_hint(module: str) -> str | None:
    """`pip install 'grambot[<extra>]'` for an SDK module a grambot extra brings, else None."""
    extra = EXTRAS.get(module)
    return f"pip install 'grambot[{extra}]'" if extra is not None else None


def import_sdk(module: str, *, needed_by: str | None = None) -> ModuleType:
    """Import `module` (an SDK of `EXTRAS`, or any package: the hint is then `pip install
    <module>`); MissingDependency when it is not installed."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.partition(".")[0] != module.partition(".")[0]:
            raise  # the SDK is there but something it imports is not: not ours to name
        top = module.partition(".")[0]
        hint = install_hint(top) or f"pip install {top}"
        raise MissingDependency(top, hint, needed_by=needed_by) from None


def missing_sdk(plugin_id: str) -> str | None:
    """For a built-in whose SDK is not installed, the `pip install` that brings it (found
    without importing anything); None when it is installed or needs none."""
    module = PLUGIN_SDKS.get(plugin_id)
    if module is None:
        return None
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else install_hint(module)
