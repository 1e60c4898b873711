"""`allowedModules`: which absolute imports a plugin's own modules may make.

When a manifest declares `allowedModules`, the modules of the plugin's folder may import only
the modules it names (standard-library modules included: list `json`, `asyncio`, ... too) and
their submodules, plus `grambot` and `__future__`; relative imports (`from .helper import x`)
are always allowed. Any other import raises `PluginImportDenied` (an ImportError) naming the
plugin and the module. Without `allowedModules` nothing is checked.

The check lives in the per-namespace `__builtins__.__import__` of the loader (no global import
hook), so it sees only the `import` statements of the plugin's own code: a library the plugin
imports is not checked, and `importlib.import_module` or `sys.modules` get around it. It is a
guard rail that keeps a plugin's dependencies declared, not a security sandbox.
"""

from __future__ import annotations

from grambot.config.descriptor import PluginDescriptor
from grambot.containment.loader import ImportHook, PluginNamespace
from grambot.errors import PluginImportDenied

__all__ = ["ALWAYS_ALLOWED", "module_guard"]

ALWAYS_ALLOWED = ("grambot", "__future__")


def module_guard(descriptor: PluginDescriptor, instance_id: str) -> ImportHook | None:
    """The loader's `import_hook` enforcing `descriptor.allowed_modules`, or None if unset."""
    if descriptor.allowed_modules is None:
        return None
    allowed = frozenset((*descriptor.allowed_modules, *ALWAYS_ALLOWED))

    def check(name: str, namespace: PluginNamespace) -> None:
        if name in allowed:
            return
        parts = name.split(".")
        for end in range(len(parts) - 1, 0, -1):
            if ".".join(parts[:end]) in allowed:
                return
        listed = ", ".join(descriptor.allowed_modules or ()) or "empty"
        who = f"plugin {descriptor.id!r}"
        if instance_id != descriptor.id:
            who += f" (instance {instance_id!r})"
        raise PluginImportDenied(
            f"{who} may not import {name!r}: it is not in allowedModules ({listed}) of "
            f"{descriptor.descriptor_path}; add {parts[0]!r} there to allow it",
            name=name,
        )

    return check
