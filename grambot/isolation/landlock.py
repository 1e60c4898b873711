"""Landlock (Linux >= 5.13) through its three system calls, with ctypes: a process restricts
its own file system access, and (ABI >= 6) its signals and abstract Unix sockets, for good.

`abi()` is the kernel's Landlock ABI version (0: unavailable). `restrict(read, write)` lets
the calling process (and what it forks) read `read` and read/write `write` (files or folders,
with what lies beneath), and nothing else; with ABI >= 6 it also cannot signal processes
outside its domain (the engine) nor reach their abstract Unix sockets. Paths that do not exist
are skipped. Network access is not restricted: plugins call APIs.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable

from grambot.errors import LandlockError

__all__ = ["LandlockError", "abi", "restrict"]

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # x86_64 and arm64
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# access rights on files (and, but for the first group, on folders)
_EXECUTE, _WRITE_FILE, _READ_FILE = 1 << 0, 1 << 1, 1 << 2
_READ_DIR, _REMOVE_DIR, _REMOVE_FILE = 1 << 3, 1 << 4, 1 << 5
_MAKE_CHAR, _MAKE_DIR, _MAKE_REG, _MAKE_SOCK = 1 << 6, 1 << 7, 1 << 8, 1 << 9
_MAKE_FIFO, _MAKE_BLOCK, _MAKE_SYM = 1 << 10, 1 << 11, 1 << 12
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15  # ABI 2, 3, 5
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6

_FILE_RIGHTS = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV
_READ = _EXECUTE | _READ_FILE | _READ_DIR
_WRITE_EXTRA = (
    _WRITE_FILE
    | _REMOVE_DIR
    | _REMOVE_FILE
    | _MAKE_DIR
    | _MAKE_REG
    | _MAKE_SOCK
    | _MAKE_FIFO
    | _MAKE_SYM
    | _REFER
    | _TRUNCATE
)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in linux/landlock.h
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is unavailable."""
    version = _libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    return max(0, int(version))


def _handled(version: int) -> int:
    handled = _READ | _WRITE_EXTRA | _MAKE_CHAR | _MAKE_BLOCK | _IOCTL_DEV
    if version < 2:
        handled &= ~_REFER
    if version < 3:
        handled &= ~_TRUNCATE
    if version < 5:
        handled &= ~_IOCTL_DEV
    return handled


def restrict(read: Iterable[str], write: Iterable[str]) -> int:
    """Restrict this process for good; returns the ABI used. LandlockError if it cannot."""
    version = abi()
    if version < 1:
        raise LandlockError(0, "Landlock is not available on this kernel")
    handled = _handled(version)
    attr = _RulesetAttr(handled, 0, 0)
    size = ctypes.sizeof(_RulesetAttr)
    if version >= 6:
        attr.scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL
    else:
        size = 8  # the struct as ABI 1-3 know it: only handled_access_fs
    ruleset = _libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    if ruleset < 0:
        raise _error("landlock_create_ruleset")
    try:
        for paths, rights in ((read, _READ), (write, _READ | _WRITE_EXTRA)):
            for path in paths:
                _allow(int(ruleset), path, rights & handled)
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise _error("prctl(PR_SET_NO_NEW_PRIVS)")
        if _libc.syscall(_SYS_RESTRICT_SELF, int(ruleset), 0) != 0:
            raise _error("landlock_restrict_self")
    finally:
        os.close(int(ruleset))
    return version


def _allow(ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # not there on this machine: nothing to allow
    try:
        if not os.path.isdir(path):
            rights &= _FILE_RIGHTS
        rule = _PathBeneathAttr(rights, fd)
        if _libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
            raise _error(f"landlock_add_rule({path})")
    finally:
        os.close(fd)


def _error(what: str) -> LandlockError:
    errno = ctypes.get_errno()
    return LandlockError(errno, f"{what}: {os.strerror(errno)}")
