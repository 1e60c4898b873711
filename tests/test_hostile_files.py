"""Hostile files and trees: settings, secrets and plugin files that are not
regular files or are huge, folder trees deeper than any real one, symlinked settings, lock
contention between CLI processes, deadlines too short to keep, plugin folders that appear late.

Everything here is real: FIFOs made with os.mkfifo, symlinks to /dev/zero, 1,200-level trees,
real `grambot` processes.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from grambot.app.watcher import read_live_settings
from grambot.config.catalog import PluginCatalog
from grambot.config.edit import read_document
from grambot.config.settings import load_settings
from grambot.engine import Engine
from grambot.errors import EditRefused, SecretsError, SettingsError
from grambot.secrets.store import FileSecretsStore
from tests.helpers import FIXTURE_PLUGINS, entry, eventually
from tests.runproc import EngineProcess, cli, running, workspace_with

DEV_ZERO = Path("/dev/zero")
MEMORY_CAP = 4 * 1024**3  # bytes of address space a test (and its children) may use


@pytest.fixture(autouse=True)
def _bounded_memory() -> Iterator[None]:
    """A read of /dev/zero that slipped through fails with MemoryError (in this process) or
    dies (in a child) at 4 GB, instead of eating the shared machine's memory."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = MEMORY_CAP if hard == resource.RLIM_INFINITY else min(MEMORY_CAP, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def settings_ws(root: Path, plugins: list[dict[str, Any]] | None = None, **keys: Any) -> Path:
    return workspace_with(root, plugins or [], **keys)


@pytest.fixture
def deep_tree() -> Iterator[Callable[[Path, int], Path]]:
    """Makes `root/d/d/.../d`, `levels` deep (returns the deepest folder), and removes it
    afterwards, bottom up: pytest's own clean-up of old temp folders (shutil.rmtree) recurses
    and would fail on it in every later session on this machine."""
    made: list[Path] = []

    def make(root: Path, levels: int) -> Path:
        path = root
        for _ in range(levels):
            path = path / "d"
            path.mkdir(parents=True)
            made.append(path)
        return path

    yield make
    for path in reversed(made):
        os.rmdir(path)


def plugin_folder(parent: Path, plugin_id: str) -> Path:
    """A copy of the fixture `marker` plugin under another id."""
    folder = parent / plugin_id
    shutil.copytree(FIXTURE_PLUGINS / "marker", folder)
    manifest = json.loads((folder / "plugin.json").read_text())
    manifest["id"] = plugin_id
    (folder / "plugin.json").write_text(json.dumps(manifest))
    return folder


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- settings.json ----------------------------------------------------------------------------


@pytest.fixture(params=["fifo", "dev-zero"])
def unreadable_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    ws = settings_ws(tmp_path)
    path = ws / ".scout" / "settings.json"
    path.unlink()
    if request.param == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(DEV_ZERO)
    yield ws


@pytest.mark.timeout(10)
def test_settings_that_is_not_a_regular_file_is_an_error_naming_it(
    unreadable_settings: Path,
) -> None:
    path = unreadable_settings / ".scout" / "settings.json"
    with pytest.raises(SettingsError, match="not a regular file") as info:
        load_settings(unreadable_settings)
    assert str(path) in str(info.value)
    live = read_live_settings(unreadable_settings)
    assert live.kind == "invalid" and live.error is not None
    assert str(path) in str(live.error) and "not a regular file" in str(live.error)
    with pytest.raises((SettingsError, EditRefused), match="not a regular file"):
        read_document(unreadable_settings)


@pytest.mark.timeout(10)
def test_settings_larger_than_5_mb_is_an_error_everywhere(tmp_path: Path) -> None:
    ws = settings_ws(tmp_path)
    path = ws / ".scout" / "settings.json"
    padding = " " * (5 * 1024 * 1024)
    path.write_text('{"plugins": []' + padding + "}")
    for read in (load_settings, lambda w: read_live_settings(w).error, read_document):
        try:
            outcome: Any = read(ws)
        except (SettingsError, EditRefused) as exc:
            outcome = exc
        assert "larger than 5 MB" in str(outcome), read
        assert str(path) in str(outcome)


@pytest.mark.timeout(20)
def test_validate_and_enable_refuse_a_settings_file_that_is_not_regular(
    unreadable_settings: Path,
) -> None:
    ws = unreadable_settings
    path = ws / ".scout" / "settings.json"
    for args in (["validate"], ["enable", "marker", "--no-input"]):
        done = cli(ws, *args, timeout=10)
        assert done.returncode == 1, (args, done.stderr)
        assert "not a regular file" in done.stderr and str(path) in done.stderr
        assert "Traceback" not in done.stderr


@pytest.mark.timeout(30)
def test_run_with_a_settings_file_that_is_not_regular_reports_it_and_stops_on_sigterm(
    unreadable_settings: Path,
) -> None:
    ws = unreadable_settings
    path = ws / ".scout" / "settings.json"
    engine = EngineProcess(ws)
    try:
        engine.wait_for_log("not a regular file")
        assert str(path) in engine.output
        engine.wait_ready()
        rss_kb = int(
            next(
                line.split()[1]
                for line in Path(f"/proc/{engine.proc.pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:")
            )
        )
        assert rss_kb < 300_000, rss_kb  # never read: no gigabytes of zeros
    finally:
        assert engine.stop() == 0, engine.output


# -- secrets.json -----------------------------------------------------------------------------


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "huge"])
def test_a_secrets_file_that_is_not_regular_or_too_big_is_an_error_naming_it(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "secrets.json"
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    elif kind == "dev-zero":
        path.symlink_to(DEV_ZERO)
    else:
        path.write_text('{"a": {"k": "' + "x" * (6 * 1024 * 1024) + '"}}')
        path.chmod(0o600)
    store = FileSecretsStore(path)
    expected = "larger than" if kind == "huge" else "not a regular file"
    with pytest.raises(SecretsError, match=expected) as info:
        store.get("a", "k")
    assert str(path) in str(info.value)


@pytest.mark.timeout(20)
def test_secrets_cli_with_a_fifo_secrets_file_fails_fast(tmp_path: Path) -> None:
    ws = settings_ws(tmp_path)
    os.mkfifo(ws / ".scout" / "secrets.json", 0o600)
    done = cli(ws, "secrets", "list", timeout=10)
    assert done.returncode == 1, done.stderr
    assert "not a regular file" in done.stderr and "Traceback" not in done.stderr


# -- plugin files -----------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_plugin_json_that_is_not_a_regular_file_is_a_problem_naming_it(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    good = plugin_folder(plugins, "good")
    fifo_folder = plugin_folder(plugins, "fifo")
    (fifo_folder / "plugin.json").unlink()
    os.mkfifo(fifo_folder / "plugin.json")
    zero_folder = plugin_folder(plugins, "zero")
    (zero_folder / "plugin.json").unlink()
    (zero_folder / "plugin.json").symlink_to(DEV_ZERO)
    huge_folder = plugin_folder(plugins, "huge")
    (huge_folder / "plugin.json").write_text('{"id": "huge", "pad": "' + "x" * 2_000_000 + '"}')

    catalog = PluginCatalog.discover(builtin_dir=None, plugin_dirs=[plugins], entry_points=False)
    assert catalog.ids() == ["good"]
    assert catalog.get("good") is not None and catalog.get("good").folder == good.resolve()
    problems = "\n".join(str(p) for p in catalog.problems)
    assert f"{fifo_folder / 'plugin.json'}" in problems
    assert f"{zero_folder / 'plugin.json'}" in problems
    assert problems.count("not a regular file") == 2, problems
    assert f"{huge_folder / 'plugin.json'}" in problems and "larger than" in problems


@pytest.mark.timeout(20)
async def test_a_plugin_module_that_is_a_fifo_fails_the_instance_at_once(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    folder = plugin_folder(plugins, "piped")
    (folder / "plugin.py").write_text(
        "from grambot import Plugin\nfrom . import helper\n\n"
        "plugin = Plugin(create=lambda api: helper)\n"
    )
    os.mkfifo(folder / "helper.py")
    ws = workspace_with(tmp_path / "ws", [entry("p", "piped")])
    data = json.loads((ws / ".scout" / "settings.json").read_text())
    data["pluginDirs"] = [str(plugins)]
    (ws / ".scout" / "settings.json").write_text(json.dumps(data))
    engine = Engine(ws, builtin_dir=None, entry_points=False)
    await engine.event_engine.start()
    try:
        started = time.monotonic()
        await engine.apply(engine.read_settings())
        instance = engine.instance("p")
        assert instance is not None and instance.failure is not None
        assert time.monotonic() - started < 5  # not the create deadline (30 s)
        assert instance.failure.kind == "import-error", instance.failure
        assert "not a regular file" in instance.failure.message
        assert str(folder / "helper.py") in instance.failure.message
    finally:
        await engine.stop(drain_deadline=1.0)


@pytest.mark.timeout(10)
def test_an_entry_module_that_is_a_fifo_is_a_catalog_problem_naming_it(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    folder = plugin_folder(plugins, "piped")
    (folder / "plugin.py").unlink()
    os.mkfifo(folder / "plugin.py")
    catalog = PluginCatalog.discover(builtin_dir=None, plugin_dirs=[plugins], entry_points=False)
    assert catalog.ids() == []
    problems = "\n".join(str(p) for p in catalog.problems)
    assert f"{folder / 'plugin.py'}" in problems and "not a regular file" in problems, problems


# -- deep trees -------------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_a_1200_level_tree_under_plugin_dirs_is_searched_iteratively(
    tmp_path: Path, deep_tree: Callable[[Path, int], Path]
) -> None:
    plugins = tmp_path / "plugins"
    plugin_folder(plugins, "shallow")
    deepest = deep_tree(plugins / "deep", 1200)
    catalog = PluginCatalog.discover(builtin_dir=None, plugin_dirs=[plugins], entry_points=False)
    assert catalog.ids() == ["shallow"]
    problems = [str(p) for p in catalog.problems]
    assert len(problems) == 1 and "deeper than" in problems[0], problems
    assert str(deepest) not in problems[0]  # the folder where the search stopped, not the end


@pytest.mark.timeout(40)
def test_validate_and_run_survive_a_1200_level_tree(
    tmp_path: Path, deep_tree: Callable[[Path, int], Path]
) -> None:
    ws = settings_ws(tmp_path, [entry("m", "marker")])
    tree_root = tmp_path / "plugins"
    plugin_folder(tree_root, "marker2")
    deep_tree(tree_root / "deep", 1200)
    data = json.loads((ws / ".scout" / "settings.json").read_text())
    data["pluginDirs"] = [str(FIXTURE_PLUGINS), str(tree_root)]
    data["plugins"].append(entry("m2", "marker2"))
    (ws / ".scout" / "settings.json").write_text(json.dumps(data))

    done = cli(ws, "validate", timeout=20)
    assert "RecursionError" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "deeper than" in done.stderr

    with running(ws) as engine:
        engine.wait_states({"m": "loaded", "m2": "loaded"})
        assert "RecursionError" not in engine.output and "Traceback" not in engine.output


# -- CLI edits through a symlinked settings.json ------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("relative", [False, True])
def test_cli_edits_follow_a_symlinked_settings_file(tmp_path: Path, relative: bool) -> None:
    ws = tmp_path / "ws"
    (ws / ".scout").mkdir(parents=True)
    shared = tmp_path / "config" / "grambot-settings.json"
    shared.parent.mkdir()
    shared.write_text(json.dumps({"pluginDirs": [str(FIXTURE_PLUGINS)], "plugins": []}))
    shared.chmod(0o640)
    link = ws / ".scout" / "settings.json"
    link.symlink_to(os.path.relpath(shared, link.parent) if relative else shared)
    target_before = os.readlink(link)

    done = cli(ws, "enable", "marker", "--instance", "m1", "--no-input")
    assert done.returncode == 0, done.stderr
    done = cli(ws, "disable", "m1")
    assert done.returncode == 0, done.stderr

    assert link.is_symlink() and os.readlink(link) == target_before  # still the same link
    data = json.loads(shared.read_text())
    assert [(p["instanceId"], p["enabled"]) for p in data["plugins"]] == [("m1", False)]
    assert shared.stat().st_mode & 0o777 == 0o640  # the target keeps its mode
    leftovers = [p.name for p in shared.parent.iterdir() if p != shared]
    assert leftovers == [], leftovers  # no temp file left beside the target


# -- lock contention ----------------------------------------------------------------------------


def _held(lock_path: Path) -> Any:
    from filelock import FileLock

    lock = FileLock(str(lock_path))
    lock.acquire(timeout=5)
    return lock


def _gives_up_on_held_lock(
    ws: Path, lock_name: str, lock_timeout: str, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run the CLI while this test holds `lock_name`: it must say it waits, then exit 1 cleanly
    after `lock_timeout` seconds."""
    lock = _held(ws / ".scout" / lock_name)
    try:
        done = cli(ws, *args, stdin=stdin, env={"GRAMBOT_LOCK_TIMEOUT": lock_timeout}, timeout=20)
    finally:
        lock.release()
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "Timeout" not in done.stderr, done.stderr
    assert "waiting" in done.stderr and lock_name in done.stderr, done.stderr
    return done


@pytest.mark.timeout(30)
def test_an_edit_waits_for_a_held_settings_lock_with_a_message_then_exits_1(
    tmp_path: Path,
) -> None:
    ws = settings_ws(tmp_path)
    started = time.monotonic()
    done = _gives_up_on_held_lock(ws, "settings.json.lock", "1.5", "enable", "marker", "--no-input")
    waited = time.monotonic() - started
    assert "nothing was written" in done.stderr, done.stderr
    assert waited >= 1.5
    assert json.loads((ws / ".scout" / "settings.json").read_text())["plugins"] == []


@pytest.mark.timeout(30)
def test_secrets_set_waits_for_a_held_secrets_lock_with_a_message_then_exits_1(
    tmp_path: Path,
) -> None:
    ws = settings_ws(tmp_path)
    _gives_up_on_held_lock(
        ws, "secrets.json.lock", "1", "secrets", "set", "m1", "token", stdin="s3cret-value\n"
    )
    assert not (ws / ".scout" / "secrets.json").exists()


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("command", ["enable", "secrets set"])
def test_a_hundred_concurrent_cli_edits_wait_or_give_up_cleanly(
    tmp_path: Path, command: str
) -> None:
    """100 processes queue on a lock this test holds until each says it waits: the half told
    to wait 1 s give up with a message and exit 1, the other half get their edit in once the
    lock is free."""
    ws = settings_ws(tmp_path)
    lock_name = "settings.json.lock" if command == "enable" else "secrets.json.lock"
    logs = tmp_path / "logs"
    logs.mkdir()
    lock = _held(ws / ".scout" / lock_name)
    procs: list[subprocess.Popen[str]] = []
    try:
        for n in range(100):
            args = (
                ["enable", "marker", "--instance", f"m{n}", "--no-input"]
                if command == "enable"
                else ["secrets", "set", f"m{n}", "token"]
            )
            with (logs / f"{n}.err").open("w") as err:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "grambot", *args, "--workspace", str(ws)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    text=True,
                    env={**os.environ, "GRAMBOT_LOCK_TIMEOUT": "1" if n % 2 else "120"},
                )
            assert proc.stdin is not None
            proc.stdin.write(f"value-{n}-secret\n")  # read before the lock is taken
            proc.stdin.close()
            procs.append(proc)

        def settled(n: int) -> bool:
            if n % 2:  # the impatient ones: gave up
                return procs[n].poll() is not None
            return "waiting" in (logs / f"{n}.err").read_text()  # the patient: still waiting

        eventually(lambda: all(settled(n) for n in range(100)), 120, 0.1, what="all 100 settled")
    finally:
        lock.release()
    for proc in procs:
        proc.wait(timeout=240)
    for n, proc in enumerate(procs):
        err = (logs / f"{n}.err").read_text()
        assert "Traceback" not in err and "Timeout" not in err, err
        assert proc.returncode == (1 if n % 2 else 0), (n, proc.returncode, err)
        assert "waiting" in err and lock_name in err, err
    patient = {f"m{n}" for n in range(0, 100, 2)}
    if command == "enable":
        data = json.loads((ws / ".scout" / "settings.json").read_text())
        assert {p["instanceId"] for p in data["plugins"]} == patient
    else:
        stored = json.loads((ws / ".scout" / "secrets.json").read_text())
        assert set(stored) == patient


# -- deadlines under 10 ms --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timeouts", "key"),
    [
        ({"eventHandler": 1e-6}, "timeouts.eventHandler"),
        ({"create": 0.005}, "timeouts.create"),
        ({"unload": 0.0099}, "timeouts.unload"),
        ({"overrideMs": 5}, "timeouts.overrideMs"),
    ],
)
def test_deadlines_under_10_ms_are_refused_with_a_clear_error(
    tmp_path: Path, timeouts: dict[str, Any], key: str
) -> None:
    ws = settings_ws(tmp_path, timeouts=timeouts)
    with pytest.raises(SettingsError) as info:
        load_settings(ws)
    text = str(info.value)
    assert key in text and "10 ms" in text, text


def test_a_deadline_of_exactly_10_ms_is_accepted(tmp_path: Path) -> None:
    ws = settings_ws(tmp_path, timeouts={"eventHandler": 0.01, "overrideMs": 10})
    settings = load_settings(ws)
    assert settings.timeouts.event_handler == 0.01 and settings.timeouts.override_ms == 10


def test_manifest_and_api_deadlines_under_10_ms_are_refused(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    folder = plugin_folder(plugins, "hasty")
    manifest = json.loads((folder / "plugin.json").read_text())
    manifest["timeoutMs"] = 5
    (folder / "plugin.json").write_text(json.dumps(manifest))
    catalog = PluginCatalog.discover(builtin_dir=None, plugin_dirs=[plugins], entry_points=False)
    assert catalog.ids() == []
    assert "timeoutMs" in str(catalog.problems[0]) and "10" in str(catalog.problems[0])

    engine = Engine(settings_ws(tmp_path / "ws"), builtin_dir=None, entry_points=False)
    with pytest.raises(ValueError, match="10 ms"):
        engine.register_custom_plugins(plugins, timeout_ms=5)

    done = cli(tmp_path / "ws", "run-plugin", "hasty", "--timeout-ms", "5")
    assert done.returncode == 2 and "--timeout-ms" in done.stderr, done.stderr


@pytest.mark.timeout(30)
def test_an_engine_given_a_microsecond_event_handler_deadline_does_not_spin(
    tmp_path: Path,
) -> None:
    ws = settings_ws(tmp_path, [entry("m", "marker")], timeouts={"eventHandler": 1e-6})
    with running(ws) as engine:
        assert "timeouts.eventHandler" in engine.output and "10 ms" in engine.output
        time.sleep(0.5)
        before = process_cpu_seconds(engine.proc.pid)
        time.sleep(1.5)
        used = process_cpu_seconds(engine.proc.pid) - before
        assert used < 0.5, f"{used:.2f} s of CPU in 1.5 s of idling"


# -- pluginDirs folders that appear after start --------------------------------------------------


def _late_plugin_dir_ws(root: Path, later: Path) -> Path:
    """A workspace whose only pluginDirs entry, `later`, does not exist yet, and an entry for
    the `lateplug` plugin that will appear there."""
    ws = settings_ws(root, [entry("lp", "lateplug")])
    data = json.loads((ws / ".scout" / "settings.json").read_text())
    data["pluginDirs"] = [str(later)]
    (ws / ".scout" / "settings.json").write_text(json.dumps(data))
    return ws


@pytest.mark.timeout(30)
@pytest.mark.parametrize("nested", [False, True])
def test_a_plugin_dir_created_after_start_is_watched_at_once(tmp_path: Path, nested: bool) -> None:
    later = tmp_path / "later" / ("deeper" if nested else "")
    with running(_late_plugin_dir_ws(tmp_path / "ws", later)) as engine:
        assert engine.states() == {"lp": "failed"}
        staging = tmp_path / "staging"
        plugin_folder(staging, "lateplug")
        later.mkdir(parents=True)
        time.sleep(0.3)  # the folder exists, empty, for a while: then the plugin appears in it
        shutil.copytree(staging / "lateplug", later / "lateplug")
        engine.wait_states({"lp": "loaded"})
        # and a second plugin folder, later still, is seen too
        plugin_folder(staging, "lateplug2")
        shutil.copytree(staging / "lateplug2", later / "lateplug2")
        engine.write([entry("lp", "lateplug"), entry("lp2", "lateplug2")], pluginDirs=[str(later)])
        engine.wait_states({"lp": "loaded", "lp2": "loaded"})


@pytest.mark.timeout(30)
def test_a_plugin_dir_created_with_its_plugin_already_inside_is_loaded(tmp_path: Path) -> None:
    later = tmp_path / "later"
    with running(_late_plugin_dir_ws(tmp_path / "ws", later)) as engine:
        staging = tmp_path / "staging"
        plugin_folder(staging / "tree", "lateplug")
        os.rename(staging / "tree", later)  # the whole folder appears at once
        engine.wait_states({"lp": "loaded"})
