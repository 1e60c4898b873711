"""Control groups for the children of process-isolated instances, where the engine can make
them: a memory limit the kernel enforces (its OOM killer acts inside the child's own group, so
a plugin that catches MemoryError still cannot pass it) and a cap on processes (`pids`).

    create(name, memory_bytes, max_pids) -> Group | None   None: no usable controller here
    group.add(pid)          a process joins (the child joins itself, before any plugin code)
    group.oom_killed()      the kernel's OOM killer killed a member
    group.close()           kill every member left (forked grandchildren), remove the group

cgroup v1 (a `memory` or `pids` hierarchy mounted and writable: as root here) or cgroup v2 (a
`cgroup2` mount whose controllers the engine may enable below its own group). Groups are made
under the engine's own group, `<own>/grambot-<engine pid>/<name>` (when the engine's own group
is the hierarchy's root, as for the pids hierarchy of a container that does not delegate one,
that is `/grambot-<pid>`: a folder of ours, removed at shutdown); a folder left by an engine
that died (SIGKILL) is removed by the next engine that makes one (judged by /proc/<pid>: engines
in different pid namespaces sharing one cgroup tree are not supported).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CONTROLLERS", "Group", "available", "create", "remove_own"]

CONTROLLERS = ("memory", "pids")
_PREFIX = "grambot-"


@dataclass(frozen=True)
class _Place:
    """Where this engine's groups of one controller go."""

    base: Path  # <own group>/grambot-<pid>
    v2: bool


@dataclass
class Group:
    dirs: dict[str, Path]  # controller -> its folder (v2: the same folder for both)
    v2: bool
    closed: bool = field(default=False)

    @property
    def memory(self) -> bool:
        return "memory" in self.dirs

    @property
    def pids(self) -> bool:
        return "pids" in self.dirs

    @property
    def procs_files(self) -> list[str]:
        """What a process writes its pid to, to join the group."""
        return sorted({str(folder / "cgroup.procs") for folder in self.dirs.values()})

    def add(self, pid: int) -> None:
        for path in self.procs_files:
            Path(path).write_text(f"{pid}\n")

    def members(self) -> set[int]:
        """The pids of its processes that this engine can see. cgroup v2 lists one outside
        the engine's pid namespace as 0: never a pid to kill (`kill(0)` is the engine's own
        process group), nor is the engine itself."""
        found: set[int] = set()
        for path in self.procs_files:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(line) for line in Path(path).read_text().split())
        return {pid for pid in found if pid > 0 and pid != os.getpid()}

    def oom_killed(self) -> bool:
        """Did the kernel's OOM killer kill a process of this group (at its memory limit)?"""
        folder = self.dirs.get("memory")
        if folder is None:
            return False
        name = "memory.events" if self.v2 else "memory.oom_control"
        counters = _counters(folder / name)
        if "oom_kill" in counters:
            return counters["oom_kill"] > 0
        # kernels before 4.13 have no oom_kill counter in v1: the limit was hit, and some
        # member was SIGKILLed (the caller checks that it was not the engine)
        return not self.v2 and _int(folder / "memory.failcnt") > 0

    def peak(self) -> int | None:
        """The most processes (and threads) it held at once (`pids.peak`), where known."""
        folder = self.dirs.get("pids")
        return None if folder is None else _int(folder / "pids.peak", None)

    def close(self) -> bool:
        """Kill the members left (grandchildren must not outlive the instance) and remove
        the group; False while a killed member is still exiting (call again)."""
        for _ in range(3):  # a member may fork between the read and the kill: pids.max bounds it
            members = self.members()
            for pid in members:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if not members:
                break
        gone = True
        for folder in set(self.dirs.values()):
            try:
                folder.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                gone = False
        self.closed = gone
        return gone

    def close_within(self, seconds: float) -> bool:
        """`close`, retried for up to `seconds` (blocking: at shutdown only)."""
        deadline = time.monotonic() + seconds
        while not self.close() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.closed


def _int(path: Path, default: int | None = 0) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default  # type: ignore[return-value]


def _counters(path: Path) -> dict[str, int]:
    counters: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                counters[name] = int(value)
    return counters


# -- finding where groups can go ---------------------------------------------------------------


def _own_groups() -> dict[str, str]:
    """Controller (or "" for cgroup v2) -> this process's group in that hierarchy."""
    own: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                own[name] = path
    return own


def _mounts() -> list[tuple[Path, str, str, set[str]]]:
    """(mount point, root of the mount, type, super options) of each cgroup mount."""
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            before, _, after = line.partition(" - ")
            fields, kinds = before.split(), after.split()
            if len(fields) > 4 and len(kinds) > 2 and kinds[0] in ("cgroup", "cgroup2"):
                options = set(kinds[2].split(","))
                found.append((Path(fields[4]), fields[3], kinds[0], options))
    return found


def _within(mount: Path, root: str, own: str) -> Path | None:
    """The folder of group `own` in a hierarchy mounted at `mount` (whose root is `root`)."""
    if root != "/" and own != root and not own.startswith(root.rstrip("/") + "/"):
        return None  # our group is not visible in this mount
    relative = own[len(root) :] if root != "/" else own
    return mount / relative.lstrip("/")


def _places() -> dict[str, _Place]:
    own = _own_groups()
    places: dict[str, _Place] = {}
    mounts = _mounts()
    for mount, root, kind, options in mounts:  # v1 first: a hybrid host's memory is there
        for name in CONTROLLERS:
            if kind == "cgroup" and name in options and name in own and name not in places:
                folder = _within(mount, root, own[name])
                if folder is not None and os.access(folder, os.W_OK):
                    places[name] = _Place(folder / f"{_PREFIX}{os.getpid()}", v2=False)
    for mount, root, kind, _ in mounts:
        folder = _within(mount, root, own.get("", "/")) if kind == "cgroup2" else None
        if folder is None or not os.access(folder, os.W_OK):
            continue
        enabled = set(_read(folder / "cgroup.controllers").split())
        for name in CONTROLLERS:
            if name in enabled and name not in places and _enable(folder, name):
                places[name] = _Place(folder / f"{_PREFIX}{os.getpid()}", v2=True)
    return places


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _enable(folder: Path, name: str) -> bool:
    """Enable a v2 controller for the groups below `folder` (refused in a group that holds
    processes, other than the root: then v2 is not usable for it)."""
    if name in _read(folder / "cgroup.subtree_control").split():
        return True
    try:
        (folder / "cgroup.subtree_control").write_text(f"+{name}\n")
    except OSError:
        return False
    return True


_found: tuple[int, dict[str, _Place]] | None = None  # (for the engine of this pid, places)


def _where() -> dict[str, _Place]:
    global _found
    if _found is None or _found[0] != os.getpid():  # found again in a forked process
        _found = (os.getpid(), _places())
    return _found[1]


def available() -> set[str]:
    """The controllers groups can be made with here ("memory", "pids")."""
    return set(_where())


def _prepare(place: _Place) -> bool:
    if place.base.is_dir():
        return True
    _sweep(place.base.parent)
    try:
        place.base.mkdir()
    except FileExistsError:
        return True
    except OSError:
        return False
    return not place.v2 or all(_enable(place.base, name) for name in CONTROLLERS)


def _sweep(parent: Path) -> None:
    """Remove folders of engines that are gone (SIGKILLed), and what they left running."""
    with contextlib.suppress(OSError):
        for folder in parent.glob(f"{_PREFIX}*"):
            pid = folder.name[len(_PREFIX) :]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                for group in folder.iterdir():
                    if group.is_dir():
                        Group({"any": group}, v2=False).close_within(0.5)
                with contextlib.suppress(OSError):
                    folder.rmdir()


def create(name: str, memory_bytes: int | None, max_pids: int | None) -> Group | None:
    """A new group `name` with these limits (None: not limited), or None when no controller
    it needs can be used here (the caller falls back to rlimits)."""
    wanted = {"memory": memory_bytes, "pids": max_pids}
    dirs: dict[str, Path] = {}
    v2 = False
    for controller, place in _where().items():
        if wanted[controller] is None or not _prepare(place):
            continue
        folder = place.base / name
        v2 = place.v2
        try:
            folder.mkdir(exist_ok=True)
            _limit(folder, controller, wanted[controller], place.v2)
        except OSError:
            with contextlib.suppress(OSError):
                folder.rmdir()
            continue
        dirs[controller] = folder
    return Group(dirs, v2) if dirs else None


def _limit(folder: Path, controller: str, value: int | None, v2: bool) -> None:
    if controller == "memory":
        if v2:
            (folder / "memory.max").write_text(f"{value}\n")
            with contextlib.suppress(OSError):  # no swap past the limit either
                (folder / "memory.swap.max").write_text("0\n")
        else:
            (folder / "memory.limit_in_bytes").write_text(f"{value}\n")
            with contextlib.suppress(OSError):  # memsw exists only with swap accounting
                (folder / "memory.memsw.limit_in_bytes").write_text(f"{value}\n")
    else:
        (folder / "pids.max").write_text(f"{value}\n")


def remove_own() -> None:
    """Remove this engine's folders (at shutdown, once its groups are closed)."""
    if _found is None or _found[0] != os.getpid():
        return
    for place in _found[1].values():
        with contextlib.suppress(OSError):
            place.base.rmdir()
