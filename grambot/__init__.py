"""grambot: an instance-lifecycle engine for chat bots.

This module is the plugin author's API and nothing else: what a plugin defines, registers,
emits, raises and catches. Engine-side names stay in their modules (grambot.engine,
grambot.errors, ...). Names are imported on first use (PEP 562), so `import grambot` and
`grambot --help` stay instant.
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # writing a plugin
    "Plugin": "grambot.contract.definition",
    "NoSettings": "grambot.contract.definition",
    "PluginApi": "grambot.contract.api",
    "InstanceInfo": "grambot.contract.api",
    "PluginEvent": "grambot.events.event",
    # extension points and their data
    "Connector": "grambot.registries.connectors",
    "Attachment": "grambot.registries.connectors",
    "IncomingMessage": "grambot.registries.connectors",
    "CONNECTOR_MESSAGE": "grambot.registries.connectors",
    "InferenceProvider": "grambot.registries.inference",
    "InferenceRequest": "grambot.registries.inference",
    "InferenceResponse": "grambot.registries.inference",
    "ChatMessage": "grambot.registries.inference",
    "ToolCall": "grambot.registries.inference",
    "ToolDefinition": "grambot.registries.inference",
    "Usage": "grambot.registries.inference",
    "Tool": "grambot.registries.tools",
    "ToolContext": "grambot.registries.tools",
    "ToolResult": "grambot.registries.tools",
    "ImageProvider": "grambot.registries.images",
    "GeneratedImage": "grambot.registries.images",
    "ServiceError": "grambot.errors",
    # errors
    "GrambotError": "grambot.errors",
    "StageTimeout": "grambot.errors",
    "NotReady": "grambot.errors",
    "SetupError": "grambot.errors",
    "MissingDependency": "grambot.errors",
    "RegistrationError": "grambot.errors",
    "RegistrationConflict": "grambot.errors",
    "SecretsError": "grambot.errors",
    "AccessDenied": "grambot.errors",
    "PluginImportDenied": "grambot.errors",
}

# Engine-side errors that were exported here before 0.2; the alias goes in 0.3.
_MOVED = {
    name: "grambot.errors"
    for name in ("DescriptorError", "PluginLoadError", "PluginNotFound", "SettingsError")
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> _Any:
    module = _EXPORTS.get(name)
    if module is None:
        if name in _MOVED:
            import warnings

            warnings.warn(
                f"grambot.{name} is engine-side: import it from {_MOVED[name]} (the alias goes"
                " in grambot 0.3)",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(_importlib.import_module(_MOVED[name]), name)
        raise AttributeError(f"module 'grambot' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if _TYPE_CHECKING:
    from grambot.contract.api import InstanceInfo, PluginApi
    from grambot.contract.definition import NoSettings, Plugin
    from grambot.errors import (
        AccessDenied,
        GrambotError,
        MissingDependency,
        NotReady,
        PluginImportDenied,
        RegistrationConflict,
        RegistrationError,
        SecretsError,
        ServiceError,
        SetupError,
        StageTimeout,
    )
    from grambot.events.event import PluginEvent
    from grambot.registries.connectors import (
        CONNECTOR_MESSAGE,
        Attachment,
        Connector,
        IncomingMessage,
    )
    from grambot.registries.images import GeneratedImage, ImageProvider
    from grambot.registries.inference import (
        ChatMessage,
        InferenceProvider,
        InferenceRequest,
        InferenceResponse,
        ToolCall,
        ToolDefinition,
        Usage,
    )
    from grambot.registries.tools import Tool, ToolContext, ToolResult
