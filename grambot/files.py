"""Reading the files grambot is handed, and waiting for their locks, without being hurt by them.

Settings, secrets, plugin manifests and modules, status and request files are read only when
they are regular files, and only up to a cap: a FIFO would block the reader forever (and with
it the event loop, so that even SIGTERM is not handled), `/dev/zero` would fill the memory, a
socket or a terminal has no end either. `read_regular` looks at the file before it opens it
(`stat`, following symlinks), opens it non-blocking (a FIFO swapped in meanwhile cannot block
the `open`), checks again on the open descriptor, and stops reading one byte past the cap.
Anything else is an `UnsafeFile` naming the path and what it is; nothing is read.

`locked` takes a lock file the CLI and the engine share (settings.json, secrets.json): when
another process holds it, it says so once (a warning: "waiting for …") and waits up to
`lock_timeout()` seconds (`GRAMBOT_LOCK_TIMEOUT`, 30 by default), then raises the caller's
error (`LockBusy` unless told otherwise), never filelock's own `Timeout`.

`write_atomic` is the one way the engine and the CLI write a file (settings, secrets, status,
requests, caches, backups, a plugin's small state): a temp file in the same folder, given its
final mode before a byte is written (a secret is never readable by others, not even for an
instant), then renamed over the old one, so that a reader sees the old file or the new one,
never a part, and a writer killed midway leaves at most a `.<name>.*.tmp` beside it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from grambot.errors import GrambotError, LockBusy, UnsafeFile

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "LOCK_TIMEOUT_ENV",
    "describe_size",
    "lock_timeout",
    "locked",
    "read_regular",
    "write_atomic",
]

logger = logging.getLogger(__name__)

LOCK_TIMEOUT_ENV = "GRAMBOT_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 30.0
_QUIET_WAIT = 0.25  # a lock held for less than this is not worth a message
_CHUNK = 1 << 20

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def describe_size(limit: int) -> str:
    """`5 MB` for a whole number of MB, else `N bytes`."""
    mb = 1024 * 1024
    return f"{limit // mb} MB" if limit >= mb and limit % mb == 0 else f"{limit} bytes"


def _check(path: Path, st: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a file")
        raise UnsafeFile(path, f"not a regular file ({kind}); refusing to read it")
    if st.st_size > limit:
        raise UnsafeFile(path, _too_big(limit, st.st_size))


def _too_big(limit: int, size: int | None) -> str:
    got = f" ({size} bytes)" if size is not None else ""
    return f"larger than {describe_size(limit)}{got}; refusing to read it"


def read_regular(path: Path | str, limit: int) -> bytes:
    """The bytes of `path` if it is a regular file (after symlinks) of at most `limit` bytes.

    Raises UnsafeFile for anything else (nothing read), and the usual OSError (FileNotFoundError,
    PermissionError, …) when it cannot be opened.
    """
    path = Path(path)
    _check(path, os.stat(path), limit)  # before opening: opening some devices has effects
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    fd = os.open(path, flags)
    try:
        _check(path, os.fstat(fd), limit)  # it may have been swapped since the stat
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > limit:  # it grew while we read it
                raise UnsafeFile(path, _too_big(limit, None))
            chunks.append(chunk)
    finally:
        os.close(fd)


def lock_timeout() -> float:
    """Seconds to wait for a busy lock: `GRAMBOT_LOCK_TIMEOUT`, else 30."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV, "")
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_LOCK_TIMEOUT
    return value if value >= 0 else DEFAULT_LOCK_TIMEOUT


@contextlib.contextmanager
def locked(
    path: Path,
    what: str,
    *,
    timeout: float | None = None,
    error: Callable[[LockBusy], GrambotError] = lambda busy: busy,
) -> Iterator[None]:
    """Hold the lock file `path` (cross-process, flock) for the block.

    When another process holds it, log once that this one waits, and give up after `timeout`
    seconds (default `lock_timeout()`) with `error(LockBusy(...))`; `what` says what giving up
    means ("nothing was written").
    """
    from filelock import FileLock, Timeout

    wait = lock_timeout() if timeout is None else timeout
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), thread_local=False)
    try:
        lock.acquire(timeout=min(_QUIET_WAIT, wait))
    except Timeout:
        logger.warning(
            "waiting for %s: another grambot process holds it (giving up after %g s)", path, wait
        )
        try:
            lock.acquire(timeout=max(0.0, wait - _QUIET_WAIT))
        except Timeout:
            raise error(LockBusy(path, wait, what)) from None
    try:
        yield
    finally:
        lock.release()


def write_atomic(
    path: Path | str,
    data: bytes | str,
    *,
    mode: int | None = 0o600,
    keep_mode: bool = False,
    fsync: bool = True,
    exclusive: bool = False,
    make_parents: bool = False,
) -> None:
    """Replace `path` with `data` (str is written as UTF-8) so readers see the old or the new
    file, never a part.

    `mode`: the new file's permissions, exactly (the umask does not apply); None gives what a
    plain `open()` would (0666 less the umask). `keep_mode`: an existing file keeps its own.
    `fsync`: the data, and the folder's new entry, are on disk when this returns (settings,
    secrets); without it a crash may lose the write but still never leaves a part (status).
    `exclusive`: never replace anything; FileExistsError when `path` exists (even as a dangling
    link), decided atomically by a hard link where the file system has them.
    """
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    if keep_mode:
        with contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(os.stat(path).st_mode)
    fd, tmp = _create_temp(path, mode)
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)  # before the data: the umask may have left it wider
            _write_all(fd, payload)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            _link_new(tmp, path)
        else:
            os.replace(tmp, path)
        if fsync:
            _fsync_folder(path.parent)
    finally:
        # After a rename the temp name is gone (nothing to do); after a link or a failure the
        # temp file must not stay behind: it may be a copy of a secret.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _create_temp(path: Path, mode: int | None) -> tuple[int, Path]:
    """A new temp file beside `path` (a dot name: watchers and request readers skip it), owner
    only, or as `open()` would make it when `mode` is None."""
    initial = 0o666 if mode is None else 0o600
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    while True:
        tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
        try:
            return os.open(tmp, flags, initial), tmp
        except FileExistsError:  # 1 in 4 billion: draw another name
            continue


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _link_new(tmp: Path, path: Path) -> None:
    """Give the complete `tmp` the name `path` unless that name exists."""
    try:
        os.link(tmp, path)  # unlike a rename, fails when `path` appeared meanwhile
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then rename (not atomic)
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        os.replace(tmp, path)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (on Linux the entry lives in the folder's data)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:  # e.g. a folder we may write but not read: the data itself is synced
        return
    try:
        with contextlib.suppress(OSError):  # some file systems refuse to sync a folder
            os.fsync(fd)
    finally:
        os.close(fd)
