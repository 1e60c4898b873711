"""The limits of a process-isolated instance (docs/isolation.md#limits): memoryMb in a
memory cgroup (else RLIMIT_AS), cpuSeconds per stage or call (sampled by the engine),
maxProcesses in a pids cgroup (else RLIMIT_NPROC when not root, else refused or warned); each
beside a healthy in-process instance that keeps answering. Real cgroups, processes and /proc:
the cases that need a cgroup skip where none can be made."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from grambot.engine import Engine
from grambot.errors import ProcessLost
from grambot.isolation import cgroups
from grambot.isolation.remote import ProcessGeneration
from tests.helpers import Workspace, entry, eventually, eventually_async
from tests.test_process_isolation import (
    _alive,
    call,
    engine,
    isolation,
    neighbour_answers,
    rogue,
    write,
)

__all__ = ["engine"]  # the fixture, shared with test_process_isolation

AVAILABLE = cgroups.available()
needs_memory_cgroup = pytest.mark.skipif(
    "memory" not in AVAILABLE,
    reason="no memory cgroup can be made here (cgroup v1/v2 not writable): memoryMb is RLIMIT_AS",
)


def _our_group_folders() -> list[Path]:
    """The cgroups this test process's engines made and left (must be none between tests)."""
    bases = [place.base for place in cgroups._where().values()]
    return [group for base in bases if base.is_dir() for group in base.iterdir() if group.is_dir()]


@pytest.fixture(autouse=True)
def no_cgroup_left() -> Iterator[None]:
    yield  # after the engine fixture has stopped its engine
    left = _our_group_folders()
    for folder in left:  # tidy for the next test, then fail this one
        cgroups.Group({"any": folder}, v2=False).close_within(1.0)
    assert not left, f"cgroups left behind: {left}"


def generation(engine: Engine, instance_id: str) -> ProcessGeneration:
    instance = engine.instance(instance_id)
    assert instance is not None and isinstance(instance.generation, ProcessGeneration)
    return instance.generation


def group_of(engine: Engine, instance_id: str) -> cgroups.Group:
    limits = generation(engine, instance_id).limits
    assert limits is not None and limits.group is not None
    return limits.group


HEALTHY = entry("healthy", "probe", tool_name="echo")


# -- memoryMb ---------------------------------------------------------------------------------


@needs_memory_cgroup
async def test_memory_mb_is_a_memory_cgroup_and_the_oom_killer_is_memory_limit(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(write(workspace, [{**rogue(), "memoryMb": 256}]))
    status = isolation(engine, "r")
    assert status["limits"] == {"memory": "cgroup", "processes": None}
    group = group_of(engine, "r")
    folder = group.dirs["memory"]
    limit = (folder / ("memory.max" if group.v2 else "memory.limit_in_bytes")).read_text()
    assert int(limit) == 256 * 1024 * 1024
    assert group.members() == {status["pid"]}
    with pytest.raises(ProcessLost) as lost:
        await call(engine, "rogue", do="allocate")  # 4 GB, touched: the kernel kills it
    assert lost.value.reason == "memory-limit"
    await eventually_async(lambda: isolation(engine, "r")["lastExit"] is not None)
    assert isolation(engine, "r")["lastExit"]["reason"] == "memory-limit"
    assert not folder.exists()  # removed when the child was reaped
    await eventually_async(lambda: str(engine.state_of("r")) == "loaded", what="the restart")
    assert group_of(engine, "r").dirs["memory"] != folder  # a new group for the new child


@needs_memory_cgroup
async def test_catching_memory_error_does_not_pass_the_limit(
    engine: Engine, workspace: Workspace
) -> None:
    plugins = [HEALTHY, {**rogue(), "memoryMb": 128}]
    await engine.apply(write(workspace, plugins))
    async with neighbour_answers(engine):
        began = time.monotonic()
        with pytest.raises(ProcessLost) as lost:
            await call(engine, "rogue", do="hog")
        assert lost.value.reason == "memory-limit"
        assert time.monotonic() - began < 10
        await eventually_async(lambda: str(engine.state_of("r")) == "loaded", what="the restart")
    assert isolation(engine, "r")["lastExit"]["reason"] == "memory-limit"


# -- cpuSeconds -------------------------------------------------------------------------------


async def test_cpu_seconds_ends_a_spinning_call_and_it_restarts(
    engine: Engine, workspace: Workspace
) -> None:
    engine.isolation.unresponsive_after = 30.0  # the CPU limit ends it, not the heartbeat
    plugins = [HEALTHY, {**rogue(), "cpuSeconds": 1}]
    await engine.apply(write(workspace, plugins))
    first = isolation(engine, "r")["pid"]
    assert isolation(engine, "r")["cpuSeconds"] == 1
    async with neighbour_answers(engine):
        began = time.monotonic()
        with pytest.raises(ProcessLost) as lost:
            await call(engine, "rogue", do="spin")  # a sync `while True` in the tool call
        assert lost.value.reason == "cpu-limit"
        assert 0.9 < time.monotonic() - began < 10
        await eventually_async(lambda: str(engine.state_of("r")) == "loaded", what="the restart")
    status = isolation(engine, "r")
    assert status["lastExit"]["reason"] == "cpu-limit" and status["restarts"] == 1
    assert status["pid"] != first and not _alive(first)
    assert (await call(engine, "rogue", do="echo", text="back")).text == "back"


async def test_cpu_seconds_count_per_call_not_per_process(
    engine: Engine, workspace: Workspace
) -> None:
    """Unlike RLIMIT_CPU: calls of 0.6 s each, under cpuSeconds 1, all pass."""
    await engine.apply(write(workspace, [{**rogue(), "cpuSeconds": 1}]))
    for _ in range(3):
        assert (await call(engine, "rogue", do="burn", seconds=0.6)).text == "burnt 0.6"
    assert isolation(engine, "r")["restarts"] == 0


async def test_cpu_seconds_ends_a_spinning_load(engine: Engine, workspace: Workspace) -> None:
    engine.isolation.unresponsive_after = 30.0
    await engine.apply(write(workspace, [{**rogue(load_does="spin"), "cpuSeconds": 0.5}]))
    instance = engine.instance("r")
    assert instance is not None and instance.failure is not None
    assert instance.failure.kind == "cpu-limit", instance.failure
    assert instance.failure.stage == "load" and str(instance.state) == "retrying"


@needs_memory_cgroup  # without a cgroup, a fork's time shows only once it is waited for
async def test_cpu_seconds_count_the_cpu_of_what_a_call_forks(
    engine: Engine, workspace: Workspace
) -> None:
    """A call that has a fork spin for it (and waits for it) uses that CPU time all the same:
    cpuSeconds must not be passed by `os.fork()` (or multiprocessing, or a subprocess)."""
    engine.isolation.unresponsive_after = 30.0
    await engine.apply(write(workspace, [{**rogue(), "cpuSeconds": 0.5}]))
    with pytest.raises(ProcessLost) as lost:
        await call(engine, "rogue", do="fork-burn", seconds=2.5)
    assert lost.value.reason == "cpu-limit"


async def test_cpu_seconds_do_not_add_up_other_calls_during_a_long_one(
    engine: Engine, workspace: Workspace
) -> None:
    """docs/isolation.md: the child is killed once *one* stage or call used more than the
    limit. A call that waits (a model's long answer, a network tool) while short calls each
    use 0.4 s of CPU under cpuSeconds 1: none of them used more than 1 s."""
    await engine.apply(write(workspace, [{**rogue(), "cpuSeconds": 1}]))
    waiting = asyncio.ensure_future(call(engine, "rogue", do="async-sleep"))
    try:
        await asyncio.sleep(0.1)
        for _ in range(4):
            assert (await call(engine, "rogue", do="burn", seconds=0.4)).text == "burnt 0.4"
        assert isolation(engine, "r")["restarts"] == 0
    finally:
        waiting.cancel()
        with contextlib.suppress(BaseException):
            await waiting


# -- maxProcesses -----------------------------------------------------------------------------


async def test_at_most_20_of_200_forks_with_max_processes_20(
    engine: Engine, workspace: Workspace
) -> None:
    if "pids" not in AVAILABLE and os.geteuid() == 0:
        pytest.skip("no pids cgroup and running as root: RLIMIT_NPROC does not hold root")
    if "pids" not in AVAILABLE:
        pytest.skip("no pids cgroup: RLIMIT_NPROC counts every process of the user, not testable")
    plugins = [HEALTHY, {**rogue(), "maxProcesses": 20}]
    await engine.apply(write(workspace, plugins))
    assert isolation(engine, "r")["limits"]["processes"] == "cgroup"
    group = group_of(engine, "r")
    async with neighbour_answers(engine):
        report = json.loads((await call(engine, "rogue", do="fork", times=200)).text)
    forked = report["pids"]
    assert 0 < len(forked) <= 19 and report["failed"] == 200 - len(forked)
    assert report["errors"] == ["BlockingIOError:EAGAIN"]
    peak = group.peak()
    assert peak is None or peak <= 20, peak
    assert all(_alive(pid) for pid in forked)
    assert len(group.members()) == 1 + len(forked)
    assert (await call(engine, "rogue", do="echo", text="still")).text == "still"
    await engine.apply(write(workspace, [HEALTHY]))  # unload: no grandchild outlives it
    await eventually_async(
        lambda: not any(_alive(pid) for pid in forked), timeout=5, what="forks gone"
    )
    assert not any(folder.exists() for folder in group.dirs.values())


async def test_max_processes_with_no_mechanism_is_refused_or_warned(
    engine: Engine, workspace: Workspace
) -> None:
    """A host without cgroups, the engine running as root: nothing can keep maxProcesses.
    memoryMb falls back to RLIMIT_AS."""
    engine.isolation.controllers = set()
    engine.isolation.root = True
    plugins = [
        {**rogue("strict", tool="s"), "maxProcesses": 20, "sandbox": "required"},
        {**rogue("lax", tool="l"), "maxProcesses": 20, "memoryMb": 256},
    ]
    await engine.apply(write(workspace, plugins))
    refused = engine.instance("strict")
    assert refused is not None and refused.failure is not None
    assert refused.failure.kind == "limit-unavailable" and str(refused.state) == "failed"
    assert "RLIMIT_NPROC" in refused.failure.message and "best-effort" in refused.failure.message
    assert str(engine.state_of("lax")) == "loaded"
    limits = isolation(engine, "lax")["limits"]
    assert limits["memory"] == "rlimit" and limits["processes"].startswith("none (")
    with pytest.raises(ProcessLost) as lost:
        await call(engine, "l", do="allocate")
    assert lost.value.reason == "memory-limit"  # a MemoryError at RLIMIT_AS


# -- settings ---------------------------------------------------------------------------------


def test_bad_limits_are_named(tmp_path: Path) -> None:
    from grambot.config.settings import parse_settings

    bad = {**entry("a", "probe"), "cpuSeconds": 0, "maxProcesses": 2}
    text = json.dumps({"plugins": [bad]})
    parsed = parse_settings(text, path=tmp_path / "settings.json", workspace=tmp_path)
    problems = {p.json_path: p.message for p in parsed.problems}
    assert problems == {
        "plugins[0].cpuSeconds": "cpuSeconds must be a number greater than 0",
        "plugins[0].maxProcesses": "maxProcesses must be at least 4",
    }
    good = {**entry("a", "probe"), "cpuSeconds": 2.5, "maxProcesses": 20}
    text = json.dumps({"plugins": [good]})
    parsed = parse_settings(text, path=tmp_path / "settings.json", workspace=tmp_path)
    config = parsed.instances[0]
    assert (config.cpu_seconds, config.max_processes) == (2.5, 20)


def test_a_limit_change_reloads(tmp_path: Path) -> None:
    from dataclasses import replace

    from grambot.config.settings import InstanceConfig
    from grambot.core.plan import differs

    config = InstanceConfig("a", "probe", True, {}, "plugins[0]", isolation="process")
    assert differs(config, replace(config, cpu_seconds=1.0))
    assert differs(config, replace(config, max_processes=20))


def test_the_group_of_a_process_kills_what_it_forked() -> None:
    """cgroups.create/add/close on a real process tree (no engine)."""
    if not AVAILABLE:
        pytest.skip("no cgroup can be made here")
    import subprocess

    group = cgroups.create("unit.1", 64 * 1024 * 1024, 10)
    assert group is not None
    script = "read go; sleep 60 & sleep 60 & wait"  # forks once it is in the group
    shell = subprocess.Popen(["sh", "-c", script], stdin=subprocess.PIPE)
    try:
        group.add(shell.pid)
        assert shell.stdin is not None
        shell.stdin.write(b"go\n")
        shell.stdin.close()
        eventually(lambda: len(group.members()) >= 3, timeout=5)
        members = group.members()
        assert shell.pid in members and len(members) == 3, members
        assert not group.oom_killed()

        def closed() -> bool:
            shell.poll()  # reaped, so it leaves the group
            return group.close()

        eventually(closed, timeout=5)
        assert group.closed and shell.wait(5) < 0
        assert not any(folder.exists() for folder in group.dirs.values())
    finally:
        shell.kill()
        shell.wait()
        group.close_within(1.0)
        cgroups.remove_own()  # what an engine does at shutdown


@needs_memory_cgroup
async def test_a_child_that_dies_leaving_forks_is_lost_at_once_and_its_forks_killed(
    engine: Engine, workspace: Workspace
) -> None:
    """Its forks hold its end of the pipe open: the engine goes by its exit status, not by the
    end of the pipe, and kills what is left in its cgroup."""
    await engine.apply(write(workspace, [rogue()]))
    forked = json.loads((await call(engine, "rogue", do="fork", times=3)).text)["pids"]
    assert len(forked) == 3 and all(_alive(pid) for pid in forked)
    began = time.monotonic()
    with pytest.raises(ProcessLost) as lost:
        await call(engine, "rogue", do="exit")
    assert lost.value.reason == "crashed" and time.monotonic() - began < 3
    await eventually_async(
        lambda: not any(_alive(pid) for pid in forked), timeout=5, what="forks gone"
    )
    await eventually_async(lambda: str(engine.state_of("r")) == "loaded", what="the restart")


def test_closing_a_group_never_kills_pid_0(tmp_path: Path) -> None:
    """cgroup v2 lists a member outside the reader's pid namespace as `0` (lxc/lxc#3520,
    kubernetes-sigs/kind#2505): e.g. in the folder of an engine in another pid namespace that
    `_sweep` takes for dead. `kill(0, SIGKILL)` is the engine's own process group: closing such
    a group must leave it alone (run here in a session of its own, so that a kill(0) ends only
    that process)."""
    import subprocess
    import sys

    folder = tmp_path / "r.1"
    folder.mkdir()
    (folder / "cgroup.procs").write_text("0\n")
    script = (
        "import sys; from pathlib import Path; from grambot.isolation import cgroups\n"
        "group = cgroups.Group({'pids': Path(sys.argv[1])}, v2=True)\n"
        "print(sorted(group.members())); group.close(); print('survived')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder)],
        capture_output=True,
        text=True,
        timeout=30,
        start_new_session=True,
    )
    assert done.returncode == 0 and "survived" in done.stdout, (done.returncode, done.stdout)
