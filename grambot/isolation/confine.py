"""What a freshly forked child does to itself before any plugin code runs: tie its life to its
parent's, join its cgroups (the engine made them: memory and processes), lower its priority,
cap its memory (RLIMIT_AS, where no memory cgroup does) and its processes (RLIMIT_NPROC, where
no pids cgroup does), drop root's capabilities, trim its environment, and restrict its file
system (Landlock). Runs in the child only, right after the fork.

`Confinement` is the plain data the engine sends with each fork request (grambot.isolation
.spawn builds it); `apply` returns what the sandbox became ("landlock ABI 7"), or raises
`SandboxRefused` when `sandbox` is "required" and Landlock cannot be applied.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
import tempfile
import threading
from typing import TypedDict

from grambot.errors import SandboxRefused
from grambot.isolation import landlock

__all__ = ["NICE", "Confinement", "SandboxRefused", "apply"]

NICE = 10  # children yield the CPU to the engine and its in-process instances
STACK_SIZE = 1024 * 1024  # threads' stacks count against RLIMIT_AS: 1 MiB, not 8
_PR_SET_PDEATHSIG = 1
_PR_CAPBSET_DROP = 24
_CAP_LAST = 63
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
# what the interpreter and TLS need besides allowedEnv
_KEPT_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR")


# read-only besides the interpreter's own paths: shared libraries, TLS roots, name resolution,
# time zones, randomness
SYSTEM_READ = (
    "/usr/lib",
    "/usr/lib64",
    "/usr/local/lib",
    "/lib",
    "/lib64",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/usr/share/ca-certificates",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/usr/share/zoneinfo",
    "/etc/localtime",
    "/etc/mime.types",  # mimetypes, for attachments
    "/dev/urandom",
    "/dev/random",
)
SYSTEM_WRITE = ("/dev/null",)


class Confinement(TypedDict):
    cgroups: list[str]  # the cgroup.procs files it joins
    memory_mb: int | None  # RLIMIT_AS: None when a memory cgroup limits it
    max_processes: int | None  # RLIMIT_NPROC: only when no pids cgroup does, and not root
    sandbox: str  # "required" | "best-effort"
    read: list[str]  # the plugin's folder (and grambot's built-ins)
    write: list[str]  # its data dir and private temp dir
    private: str  # the workspace's .scout: never readable, whatever else is
    tmp: str
    env: list[str]  # names kept from the environment (allowedEnv)


_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(parent: int) -> None:
    """SIGKILL when the parent (the zygote) ends; and now, if it ended before this ran."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def apply(spec: Confinement, parent: int) -> str:
    """Confine this process (see the module docstring); returns the sandbox in force."""
    die_with_parent(parent)
    for procs in spec["cgroups"]:  # first: all it does from here is counted there
        with open(procs, "w", encoding="ascii") as joined:
            joined.write(f"{os.getpid()}\n")
    os.nice(NICE)
    _limit_memory(spec["memory_mb"])
    _limit_processes(spec["max_processes"])
    threading.stack_size(STACK_SIZE)
    _trim_environment(spec["env"], spec["tmp"])
    if os.geteuid() == 0:
        _drop_capabilities()
    read = [*spec["read"], *interpreter_paths(spec["private"]), *SYSTEM_READ]
    try:
        version = landlock.restrict(read, [*spec["write"], *SYSTEM_WRITE])
    except landlock.LandlockError as exc:
        if spec["sandbox"] == "required":
            raise SandboxRefused(f"the Landlock sandbox cannot be applied: {exc}") from None
        return f"none ({exc})"
    return f"landlock ABI {version}"


def interpreter_paths(private: str) -> list[str]:
    """What the interpreter imports from: its installation, sys.path (site-packages, editable
    installs) and grambot itself; never a folder that holds `private` (the workspace's
    .scout)."""
    import grambot

    paths = {sys.base_prefix, sys.prefix, sys.exec_prefix, os.path.dirname(grambot.__file__)}
    paths.update(p for p in sys.path if p and os.path.isdir(p))
    hidden = os.path.realpath(private)
    return sorted(p for p in paths if not _holds(os.path.realpath(p), hidden))


def _holds(folder: str, path: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _limit_memory(memory_mb: int | None) -> None:
    """RLIMIT_AS at what the process maps now (the zygote's image) plus `memory_mb`: the
    plugin's own allocations get `memory_mb`, and past it a MemoryError."""
    if memory_mb is None:
        return
    with open("/proc/self/statm", "rb") as statm:
        mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = mapped + memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _limit_processes(max_processes: int | None) -> None:
    """RLIMIT_NPROC counts every process and thread of the user, not only this child's: the
    limit is what the user runs now plus `max_processes` (the engine uses it only when no
    pids cgroup can be made, and never as root, whom the kernel does not hold to it)."""
    if max_processes is None:
        return
    uid, running = os.getuid(), 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.stat(entry.path).st_uid == uid:
                    running += len(os.listdir(f"{entry.path}/task"))
            except OSError:
                continue
    limit = running - 1 + max_processes  # `running` counts this child already
    resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))


def _trim_environment(kept: list[str], tmp: str) -> None:
    keep = set(_KEPT_ENV) | set(kept)
    for name in list(os.environ):
        if name not in keep:
            del os.environ[name]
    os.environ["TMPDIR"] = tmp
    tempfile.tempdir = None  # recomputed from TMPDIR on next use


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _drop_capabilities() -> None:
    """Root without its capabilities: it keeps uid 0 (its files stay its own) but cannot
    override permissions, trace or signal others, load modules or mount. Best effort."""
    for cap in range(_CAP_LAST + 1):
        if _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break  # past the last capability this kernel knows
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _libc.capset(ctypes.byref(header), data)
