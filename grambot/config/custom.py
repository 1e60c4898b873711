"""`register_custom_plugins`: add plugin folders (and a timeout override) to an engine's catalog.

Summit's `registerCustomPlugins({directory, timeoutMs})`. Every folder anywhere beneath
`directory` that holds a plugin.json joins the catalog (source `custom`); with no directory the
workspace's `pluginDirs` are used. `timeout_ms`, when given, becomes the deadline of every stage,
tool execution and execute run of the plugins that scan found, over their manifests' `timeoutMs`
and the engine-wide `timeouts.overrideMs`.

Registrations are kept by the engine and applied again after every catalog rescan. Instances
still come from settings.json only; an instance already loaded keeps its deadlines until it
reloads, so register before `engine.start()`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from grambot.config.catalog import PluginCatalog
from grambot.config.descriptor import MIN_TIMEOUT_MS, PluginDescriptor
from grambot.errors import CatalogError, Problem

__all__ = ["CustomPlugins", "apply_custom_plugins", "check_timeout_ms"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CustomPlugins:
    """One `register_custom_plugins` call: None means the workspace's pluginDirs."""

    directory: Path | None
    timeout_ms: int | None


def check_timeout_ms(timeout_ms: object) -> int | None:
    if timeout_ms is None:
        return None
    if (
        isinstance(timeout_ms, bool)
        or not isinstance(timeout_ms, int)
        or timeout_ms < MIN_TIMEOUT_MS
    ):
        raise ValueError(
            f"timeout_ms must be an integer of at least {MIN_TIMEOUT_MS} ms (a deadline under "
            f"10 ms cannot be kept), got {timeout_ms!r}"
        )
    return timeout_ms


def apply_custom_plugins(
    catalog: PluginCatalog,
    overrides: dict[str, int],
    custom: CustomPlugins,
    plugin_dirs: tuple[Path, ...],
) -> list[PluginDescriptor]:
    """Scan `custom.directory` into `catalog`, record its timeout override; return what it found.

    A plugin id that the catalog already holds from another plugin.json is a problem (the first
    one stays); bad manifests are recorded in `catalog.problems` with their file and field.
    """
    scan = PluginCatalog()
    if custom.directory is None:
        for directory in plugin_dirs:
            scan.scan_directory(directory, source="pluginDir")
    else:
        scan.scan_directory(custom.directory, source="custom")
    found: list[PluginDescriptor] = []
    for descriptor in scan.descriptors():
        existing = catalog.get(descriptor.id)
        if existing is None:
            catalog.add(descriptor)
        elif existing.descriptor_path != descriptor.descriptor_path:
            try:
                catalog.add(descriptor)
            except CatalogError as exc:
                _record(catalog, exc.problems)
            continue
        found.append(descriptor)
        if custom.timeout_ms is not None:
            overrides[descriptor.id] = custom.timeout_ms
    _record(catalog, scan.problems)
    return found


def _record(catalog: PluginCatalog, problems: Iterable[Problem]) -> None:
    for problem in problems:
        if problem not in catalog.problems:
            catalog.problems.append(problem)
            logger.error("plugin catalog: %s", problem)
