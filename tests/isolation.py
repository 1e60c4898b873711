"""Keeps the tests off the repository's example workspace.

Every test builds its own workspace in a temporary folder: the repository's .scout/ may belong
to a bot running there (engine.lock, status.json, plugins/) or hold the README walkthrough's
edits. Besides running the tests with the current folder in a temporary one (conftest.py), an
audit hook records every file opened or folder listed under the repository's .scout/ by the test
process, and every subprocess pointed at it (`--workspace <repository>`, or a path under .scout/),
and refuses it with PermissionError; conftest.py fails the test that did it.

Installed once per process on import (audit hooks cannot be removed).

Tests about the example workspace itself use `shipped_example()`: the example as committed,
read from git into a temporary folder.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_SCOUT = REPO / ".scout"

_SCOUT = str(EXAMPLE_SCOUT)
_REPO = str(REPO)
_WATCHED = frozenset({"open", "os.listdir", "os.scandir", "subprocess.Popen"})
_touched: list[str] = []


def shipped_example(root: Path) -> Path:
    """The example workspace (.scout/ and plugins/) as committed, extracted into `root`.

    Read from git, never from the repository's folders: a bot may be running there (holding
    .scout/engine.lock, writing status.json) and the README's walkthrough edits settings.json.
    """
    try:
        archive = subprocess.run(
            ["git", "-C", _REPO, "archive", "--format=tar", "HEAD", ".scout", "plugins"],
            capture_output=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"the shipped example workspace is read from git, not available here: {exc}")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    return root


def take_touched() -> list[str]:
    """What was refused since the last call."""
    touched = list(_touched)
    _touched.clear()
    return touched


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | os.PathLike):
        text = os.fsdecode(value)
        return text if isinstance(text, str) else None
    return None


def _in_example_scout(value: object) -> bool:
    # Absolute paths only: a relative one is relative to the current folder, which is not the
    # repository's, or to a `dir_fd` (shutil.rmtree opens entries by name), not known here.
    path = _text(value)
    if path is None or ".scout" not in path or not os.path.isabs(path):
        return False
    path = os.path.normpath(path)
    return path == _SCOUT or path.startswith(_SCOUT + os.sep)


def _points_at_example(argv: object) -> bool:
    if not isinstance(argv, list | tuple):
        return False
    words = [_text(a) for a in argv]
    for i, word in enumerate(words):
        if word is None:
            continue
        if _in_example_scout(word):
            return True
        target = word.partition("=")[2] if word.startswith("--workspace=") else None
        if word in ("--workspace", "-w") and i + 1 < len(words):
            target = words[i + 1]
        if target is not None and os.path.isabs(target) and os.path.normpath(target) == _REPO:
            return True
    return False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event not in _WATCHED:
        return
    if event == "subprocess.Popen":  # (executable, args, cwd, env)
        target: object = args[1]
        hit = _points_at_example(target)
    else:  # open (path, mode, flags), os.listdir (path,), os.scandir (path,)
        target = args[0] if args else None
        hit = _in_example_scout(target)
    if hit:
        _touched.append(f"{event} {target!r}")
        raise PermissionError(f"tests must not use the example workspace {EXAMPLE_SCOUT}")


sys.addaudithook(_audit)
