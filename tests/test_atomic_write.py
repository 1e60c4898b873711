"""The one atomic writer (`grambot.files.write_atomic`): a reader sees the old file or the new one,
never a part; a secret's temp file is never readable by others; nothing is left behind."""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from grambot.files import write_atomic


@pytest.fixture
def umask() -> Iterator[None]:
    """Let the test set the umask; put the old one back after."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_reader_never_sees_a_half_written_file(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    versions = (b"a" * (1 << 20), b"b" * (2 << 20))
    write_atomic(path, versions[0], fsync=False)
    done = threading.Event()

    def writer() -> None:
        for i in range(60):
            write_atomic(path, versions[i % 2], fsync=False)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    reads = 0
    while not done.is_set():
        assert path.read_bytes() in versions
        reads += 1
    thread.join()
    assert reads > 0
    assert _leftovers(tmp_path) == []


def test_a_secrets_temp_file_is_never_readable_by_others(tmp_path: Path, umask: None) -> None:
    os.umask(0)  # the most permissive umask: only the writer itself keeps the file private
    path = tmp_path / "secrets.json"
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for entry in os.scandir(tmp_path):
                if entry.name.endswith(".tmp"):
                    with contextlib.suppress(FileNotFoundError):  # renamed meanwhile
                        seen.append(stat.S_IMODE(entry.stat().st_mode))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(200):  # until the watcher has caught a temp file a few times
            write_atomic(path, b"x" * (8 << 20), mode=0o600, fsync=False)
            if len(seen) >= 3:
                break
    finally:
        stop.set()
        watcher.join()
    assert seen, "never saw the temp file"
    assert {mode & 0o077 for mode in seen} == {0}
    assert _mode(path) == 0o600


def test_the_mode_is_exact_kept_or_the_umasks(tmp_path: Path, umask: None) -> None:
    os.umask(0o077)
    write_atomic(tmp_path / "a", "text", mode=0o644)
    assert _mode(tmp_path / "a") == 0o644  # exactly: the umask does not narrow it
    os.umask(0o022)
    write_atomic(tmp_path / "b", "text", mode=None)
    assert _mode(tmp_path / "b") == 0o644  # as open() would make it
    (tmp_path / "c").write_text("old")
    (tmp_path / "c").chmod(0o640)
    write_atomic(tmp_path / "c", "new", mode=0o644, keep_mode=True)
    assert _mode(tmp_path / "c") == 0o640
    assert (tmp_path / "c").read_text() == "new"
    write_atomic(tmp_path / "d", "new", mode=0o600, keep_mode=True)  # nothing to keep
    assert _mode(tmp_path / "d") == 0o600


def test_exclusive_never_replaces_anything(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    write_atomic(path, "first", exclusive=True)
    with pytest.raises(FileExistsError):
        write_atomic(path, "second", exclusive=True)
    assert path.read_text() == "first"
    dangling = tmp_path / "link.json"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        write_atomic(dangling, "x", exclusive=True)
    assert dangling.is_symlink() and not (tmp_path / "nowhere").exists()
    assert _leftovers(tmp_path) == []


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside").write_text("keep")  # a non-empty folder cannot be renamed over
    with pytest.raises(OSError):
        write_atomic(target, b"secret", mode=0o600)
    assert (target / "inside").read_text() == "keep"
    assert _leftovers(tmp_path) == []


def test_make_parents_and_str_data(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "cache.json"
    write_atomic(path, "é", make_parents=True)
    assert path.read_bytes() == "é".encode()
