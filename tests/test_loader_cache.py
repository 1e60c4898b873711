"""The loader's caches (compiled code, folder listings) never serve a stale plugin."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from grambot.containment.loader import LoaderSnapshot, PluginNamespace


def _age(path: Path, seconds: float = 60.0) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def _load(folder: Path, snapshot: LoaderSnapshot | None = None) -> object:
    namespace = PluginNamespace("cache", folder)
    try:
        return namespace.import_entry(folder / "plugin.py", snapshot)
    finally:
        namespace.unload()


def test_a_module_added_later_is_found(tmp_path: Path) -> None:
    (tmp_path / "plugin.py").write_text("from .helper import VALUE\n")
    _age(tmp_path / "plugin.py")
    _age(tmp_path)  # an old folder: its listing is trusted while its mtime stays
    with pytest.raises(ImportError):
        _load(tmp_path)
    (tmp_path / "helper.py").write_text("VALUE = 7\n")
    assert _load(tmp_path).VALUE == 7  # type: ignore[attr-defined]


def test_a_module_turned_package_is_found(tmp_path: Path) -> None:
    (tmp_path / "plugin.py").write_text("from .part import VALUE\n")
    (tmp_path / "part.py").write_text("VALUE = 'module'\n")
    for path in (tmp_path / "plugin.py", tmp_path / "part.py", tmp_path):
        _age(path)
    assert _load(tmp_path).VALUE == "module"  # type: ignore[attr-defined]
    (tmp_path / "part.py").unlink()
    (tmp_path / "part").mkdir()
    (tmp_path / "part" / "__init__.py").write_text("VALUE = 'package'\n")
    assert _load(tmp_path).VALUE == "package"  # type: ignore[attr-defined]


def test_an_old_file_rewritten_is_recompiled(tmp_path: Path) -> None:
    source = _aged_plugin(tmp_path)
    assert _load(tmp_path).VALUE == 1  # type: ignore[attr-defined]
    assert _load(tmp_path).VALUE == 1  # type: ignore[attr-defined]  # now from the stat check
    source.write_text("VALUE = 2\n")
    _age(source)  # even with an old mtime: the ctime moved
    assert _load(tmp_path).VALUE == 2  # type: ignore[attr-defined]


def test_remove_loggers_leaves_no_reference_in_placeholders() -> None:
    import logging

    from grambot.containment.loader import remove_loggers

    deep = logging.getLogger("grambot.instances.rl__1.pkg.mod")  # placeholders above it
    other = logging.getLogger("grambot.instances.rl__2.pkg.mod")
    remove_loggers("grambot.instances.rl__1")
    manager = logging.Logger.manager
    assert "grambot.instances.rl__1.pkg.mod" not in manager.loggerDict
    assert "grambot.instances.rl__2.pkg.mod" in manager.loggerDict
    for holder in manager.loggerDict.values():
        if isinstance(holder, logging.PlaceHolder):
            assert deep not in holder.loggerMap
    assert any(
        isinstance(h, logging.PlaceHolder) and other in h.loggerMap
        for h in manager.loggerDict.values()
    )
    remove_loggers("grambot.instances.rl__2")


def _aged_plugin(folder: Path) -> Path:
    """A plugin.py saying VALUE = 1, it and its folder dated in the past (so a rewrite shows)."""
    source = folder / "plugin.py"
    _rewrite_aged(source, "VALUE = 1\n")
    _age(folder)
    return source


def _rewrite_aged(source: Path, text: str) -> None:
    """Rewrite `source` with an old mtime: only its ctime says it changed."""
    source.write_text(text)
    _age(source)


def test_a_snapshot_checks_each_file_once_and_ends(tmp_path: Path) -> None:
    source = _aged_plugin(tmp_path)
    with LoaderSnapshot() as snapshot:
        assert _load(tmp_path, snapshot).VALUE == 1  # type: ignore[attr-defined]
        _rewrite_aged(source, "VALUE = 2\n")
        # every instance loaded in one reconcile sees the same code
        assert _load(tmp_path, snapshot).VALUE == 1  # type: ignore[attr-defined]
        assert _load(tmp_path).VALUE == 2  # type: ignore[attr-defined]  # a load without one checks
    assert _load(tmp_path, snapshot).VALUE == 2  # type: ignore[attr-defined]  # closed: checks
    with LoaderSnapshot() as snapshot:
        assert _load(tmp_path, snapshot).VALUE == 2  # type: ignore[attr-defined]


def test_two_open_snapshots_each_check_the_disk_once(tmp_path: Path) -> None:
    # two engines reconciling at once: each batch sees the files as they were when it first
    # read them, whatever the other one read
    source = _aged_plugin(tmp_path)
    with LoaderSnapshot() as first:
        assert _load(tmp_path, first).VALUE == 1  # type: ignore[attr-defined]
        _rewrite_aged(source, "VALUE = 2\n")
        with LoaderSnapshot() as second:
            assert _load(tmp_path, second).VALUE == 2  # type: ignore[attr-defined]
            assert _load(tmp_path, second).VALUE == 2  # type: ignore[attr-defined]
        assert _load(tmp_path, first).VALUE == 1  # type: ignore[attr-defined]


def test_one_snapshot_shared_by_threads(tmp_path: Path) -> None:
    # the loads of a batch import in several stage workers at once
    (tmp_path / "plugin.py").write_text("from .helper import VALUE\n")
    (tmp_path / "helper.py").write_text("VALUE = 3\n")
    for path in (tmp_path / "plugin.py", tmp_path / "helper.py", tmp_path):
        _age(path)
    with LoaderSnapshot() as snapshot, ThreadPoolExecutor(8) as threads:
        values = list(threads.map(lambda _: _load(tmp_path, snapshot).VALUE, range(64)))  # type: ignore[attr-defined]
    assert values == [3] * 64
