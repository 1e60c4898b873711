"""The long-running `grambot run` process.

    lock .scout/engine.lock ─ start events ─ apply settings.json ─ "grambot ready"
        │
        ├── watch .scout/ (settings.json, secrets.json, secrets.changed) ─┐  one loop:
        ├── watch pluginDirs (new plugin folders; code: --reload-plugins) ─┴► reconcile, rescan,
        ├── status.json (coalesced writes on every change; a heartbeat)       reload
        ├── the loop watchdog (grambot.app.watchdog): names who blocks the event loop
        └── SIGINT/SIGTERM ─► stop watching, drain events, unload (reverse order, each under its
                              timeout), remove status.json, release the lock, exit 0; all
                              within --shutdown-timeout (grambot.app.signals). A second signal
                              exits at once with 130.

Edits are handled one at a time by a single loop, so a burst of edits ends in the state of the
last valid file. While running, a missing or empty settings.json is transient (an editor in the
middle of a save): nothing unloads and the file is re-read shortly. An invalid file (bad JSON,
bad engine key) is reported once, with its file/line/JSON path, and changes nothing.
`grambot secrets set` (or any change of an instance's secrets from outside the engine) reloads
that instance when it is loaded, failed or retrying. `grambot retry|reload ID` arrive as files in
`.scout/requests/` (grambot.app.control). The runtime talks to the engine only through `Engine`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import KW_ONLY, InitVar, dataclass
from pathlib import Path

from grambot.app.collector import collector_set_aside
from grambot.app.control import REQUESTS_DIR, handle_requests, is_request
from grambot.app.lock import EngineLock
from grambot.app.logs import MASK
from grambot.app.sd_notify import SystemdNotifier
from grambot.app.signals import EXIT_FORCED, ShutdownSignals, arm_deadline, disarm_deadline
from grambot.app.status import STATUS_NAME, StatusWriter
from grambot.app.watchdog import LoopWatchdog
from grambot.app.watcher import PluginDirsWatch, read_live_settings, watch_files
from grambot.bot import attach_bot
from grambot.config.settings import EngineSettings
from grambot.containment.boundary import engine_cancelled, format_details
from grambot.engine import Engine, InstanceState
from grambot.errors import SecretsError
from grambot.secrets.backends import SelectedSecretsStore, open_store
from grambot.secrets.sources import ExternalSecrets

__all__ = ["EXIT_FORCED", "EXIT_SHUTDOWN_TIMEOUT", "Runtime", "run"]

logger = logging.getLogger(__name__)

EXIT_SHUTDOWN_TIMEOUT = 1
SETTINGS_NAME = "settings.json"
SECRETS_NAMES = frozenset({"secrets.json", "secrets.changed"})
_RELOADABLE = (InstanceState.LOADED, InstanceState.FAILED, InstanceState.RETRYING)


@dataclass(eq=False)
class Runtime:
    """One `grambot run`: the engine of a workspace plus its watchers, status and signals."""

    workspace: Path
    _: KW_ONLY
    reload_plugins: bool = False
    drain_deadline: float = 5.0
    shutdown_timeout: float = 60.0
    status_interval: float = 0.25
    recheck_interval: float = 0.5
    heartbeat: float = 5.0
    stall_threshold: float = 1.0
    log_messages: InitVar[bool] = False

    def __post_init__(self, log_messages: bool) -> None:
        self.workspace = self.workspace.resolve()
        self.scout = self.workspace / ".scout"
        self.lock = EngineLock(self.workspace)
        # GRAMBOT_SECRET__* and GRAMBOT_SECRETS_DIR, ahead of the store (its folder is watched)
        self.external_secrets = ExternalSecrets()
        # the backend is the `secrets` key's, switched by Engine.apply
        self.secrets = SelectedSecretsStore(
            lambda config: open_store(self.workspace, config, self.external_secrets),
            on_write=self._own_secret_write,
            on_value=lambda value: MASK.add([value]),
            on_select=self._backend_switched,
        )
        # the collector set aside while a burst loads: this process's choice, not the engine's
        self.engine = Engine(
            self.workspace, secrets=self.secrets, retries=True, around_loads=collector_set_aside
        )
        # the bot answers the inbox; --log-messages: message texts in the log (masked)
        self.bot = attach_bot(self.engine, log_messages=log_messages)
        self._stop = asyncio.Event()
        self._stop_reason: str | None = None  # a plugin asked to stop (Engine.request_stop)
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self.engine.on_stop_request(self._stop_requested)
        self._wake = asyncio.Event()
        self._settings_dirty = False
        self._secrets_dirty = False
        self._requests_dirty = False
        self._tree_changes: set[Path] = set()
        self._applied_digest: str | None = None
        self._reported: str | None = None
        self._recheck: asyncio.TimerHandle | None = None
        self._secret_digests: dict[str, str] = {}
        self._watch_stop = asyncio.Event()
        self._plugin_watch = PluginDirsWatch(self._plugin_files_seen)
        self._tasks: list[asyncio.Task[None]] = []
        self.status: StatusWriter | None = None
        self.systemd: SystemdNotifier | None = None  # under systemd's Type=notify
        # --reload-plugins: the source folders of editable plugin packages (issue 14)
        self._source_watch = PluginDirsWatch(self._plugin_files_seen)
        self._sources: tuple[Path, ...] = ()

    # -- the process ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> int:
        """Run until SIGINT/SIGTERM (or `stop`); returns the exit code. EngineLocked if taken."""
        self.lock.acquire()
        try:
            return await self._run(stop)
        finally:
            self.lock.release()

    async def _run(self, stop: asyncio.Event | None) -> int:
        loop = self._event_loop = asyncio.get_running_loop()
        signals = ShutdownSignals(
            loop,
            self._on_signal,
            deadline=self.shutdown_timeout,
            status_file=self.scout / STATUS_NAME,
        )
        signals.install()
        waiter = asyncio.ensure_future(stop.wait()) if stop is not None else None
        if waiter is not None:
            waiter.add_done_callback(lambda _: self._stop.set())
        watchdog = LoopWatchdog(
            loop,
            threshold=self.stall_threshold,
            on_stall=lambda iid: loop.call_soon_threadsafe(self.engine.note_stall, iid),
        )
        self.status = StatusWriter(
            self.scout, self.engine, min_interval=self.status_interval, heartbeat=self.heartbeat
        )
        systemd = self.systemd = SystemdNotifier.from_environ()
        try:
            if systemd is not None:
                systemd.start_watchdog(loop)  # from the loop: a frozen loop misses its pings
            if self.external_secrets:
                self.external_secrets.learn()  # masked from the first line on
                logger.info(
                    "secrets: %s, ahead of the secrets store", self.external_secrets.describe()
                )
            self.status.write_now()
            self.status.start_heartbeat()
            watchdog.start()
            await self.engine.event_engine.start()
            # Watch before the first read, so that no edit falls between the two.
            self._tasks.append(asyncio.create_task(self._watch_scout(), name="grambot-watch"))
            await _armed()
            # A signal during the first apply (a load may take up to its timeout) stops at once.
            first = asyncio.create_task(self._initial_apply(), name="grambot-first-apply")
            self._tasks.append(first)
            stopping = asyncio.create_task(self._stop.wait())
            await asyncio.wait({first, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if self._stop.is_set():
                return await self._shutdown()
            first.result()
            self._tasks.append(asyncio.create_task(self._loop(), name="grambot-reconcile"))
            self.status.flush()
            loaded = self.engine.loaded_ids()
            logger.info(
                "grambot ready in %s: %d instance(s) loaded%s; watching %s",
                self.workspace,
                len(loaded),
                f" ({', '.join(loaded)})" if loaded else "",
                self.engine.settings.path,
                extra={"event": "engine.ready"},
            )
            if systemd is not None:
                systemd.send("READY=1", f"STATUS={len(loaded)} instance(s) loaded")
            await self._stop.wait()
            return await self._shutdown()
        finally:
            if waiter is not None:
                waiter.cancel()
            watchdog.stop()
            if systemd is not None:
                systemd.close()
            signals.restore()
            disarm_deadline()  # the shutdown is over; an embedding process lives on
            if self.status is not None:
                self.status.close()

    def _on_signal(self, name: str) -> None:
        """The first SIGINT/SIGTERM (grambot.app.signals has armed the shutdown deadline)."""
        logger.info(
            "%s received: shutting down within %g s (send it again to exit at once)",
            name,
            self.shutdown_timeout,
            extra={"event": "engine.stopping"},
        )
        self._stop.set()

    def _stop_requested(self, reason: str) -> None:
        """A plugin asked the engine to stop (from any thread): as SIGTERM, but the replies in
        hand may take a third of the shutdown budget, not just the drain deadline."""

        def stop() -> None:
            self._stop_reason = reason
            self._stop.set()

        if self._event_loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: we are gone already
                self._event_loop.call_soon_threadsafe(stop)

    async def _shutdown(self) -> int:
        """Every wait of the shutdown fits in `shutdown_timeout` from here; the deadline armed
        now ends the process even if one does not (grambot.app.signals)."""
        arm_deadline(self.shutdown_timeout, self.scout / STATUS_NAME)
        if self.systemd is not None:
            self.systemd.send("STOPPING=1", "STATUS=shutting down")
        loop = asyncio.get_running_loop()
        # our own deadline comes first, so that we exit cleanly (code 1) before the hard one
        deadline = loop.time() + self.shutdown_timeout * 0.9
        self._watch_stop.set()
        if self._recheck is not None:
            self._recheck.cancel()
        tasks = [*self._tasks, *self._plugin_watch.stop(), *self._source_watch.stop()]
        for task in tasks:
            task.cancel()  # an in-flight reconcile stops here; unload_all undoes what it began
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()) / 4)
        try:
            async with asyncio.timeout_at(deadline):
                drain = max(0.0, deadline - loop.time()) / 3
                if self._stop_reason is None:  # a signal: someone waits for the process to end
                    drain = min(self.drain_deadline, drain)
                await self.engine.stop(drain_deadline=drain)
        except TimeoutError:
            logger.error(
                "shutdown did not finish within %s s; exiting with instances still unloading: %s",
                self.shutdown_timeout,
                ", ".join(i.instance_id for i in self.engine.instances()) or "none",
                extra={"event": "engine.shutdown-timeout"},
            )
            return EXIT_SHUTDOWN_TIMEOUT
        logger.info("grambot stopped", extra={"event": "engine.stopped"})
        return 0

    # -- settings ------------------------------------------------------------------------------

    async def _initial_apply(self) -> None:
        read = read_live_settings(self.workspace)
        if read.kind == "ok" and read.settings is not None:
            await self._apply(read.settings, read.digest)
            return
        if read.kind == "invalid":
            assert read.error is not None
            logger.error(
                "cannot use the settings file; starting with no instances until it is fixed:\n%s",
                read.error,
            )
            self.engine.ignore_edit(read.error)
            self._reported = read.digest
        else:
            logger.info(
                "%s %s: no instances until it is written", self.engine.settings.path, read.reason
            )
        self.engine.rescan(self.engine.settings)
        self._restart_tree_watcher()
        self._follow_sources()
        self._snapshot_secrets()

    async def _apply(self, settings: EngineSettings, digest: str) -> None:
        self._applied_digest = digest
        self._reported = None
        await self.engine.apply(settings)
        self._restart_tree_watcher()
        self._follow_sources()
        self._snapshot_secrets()

    async def _refresh_settings(self) -> None:
        read = read_live_settings(self.workspace)
        path = self.engine.settings.path
        if read.kind == "transient":
            key = f"transient:{read.reason}"
            if self._reported != key:
                running = len(self.engine.loaded_ids())
                logger.warning(
                    "%s %s; keeping the %d running instance(s) as they are and re-reading it "
                    '(write {"plugins": []} to stop every instance)',
                    path,
                    read.reason,
                    running,
                )
                self._reported = key
            self._schedule_recheck()
            return
        if read.digest == self._applied_digest:
            if self._reported is not None:
                logger.info("%s is back to the content in use; nothing to change", path)
                self._reported = None
                self.engine.clear_ignored_edit()
            return
        if read.kind == "invalid":
            await asyncio.sleep(0.05)  # a half-written file settles within milliseconds
            if read_live_settings(self.workspace).digest != read.digest:
                self._settings_dirty = True
                self._wake.set()
                return
            if self._reported != read.digest:
                assert read.error is not None
                logger.error(
                    "ignoring this edit of the settings file; the running instances stay as they "
                    "are until the next valid edit:\n%s",
                    read.error,
                    extra={"event": "settings.ignored"},
                )
                self.engine.ignore_edit(read.error)
                self._reported = read.digest
            return
        assert read.settings is not None
        logger.info("%s changed: reconciling", path, extra={"event": "settings.changed"})
        await self._apply(read.settings, read.digest)

    def _schedule_recheck(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()

        def recheck() -> None:
            self._recheck = None
            self._settings_dirty = True
            self._wake.set()

        self._recheck = asyncio.get_running_loop().call_later(self.recheck_interval, recheck)

    def _secrets_dir(self) -> Path | None:
        """GRAMBOT_SECRETS_DIR when it is a folder, to watch like secrets.json."""
        folder = self.external_secrets.directory
        if folder is None or folder.resolve() == self.scout:
            return None
        if not folder.is_dir():
            logger.warning(
                "%s is not a folder: no secrets come from it, and it is not watched", folder
            )
            return None
        return folder

    # -- the loop ------------------------------------------------------------------------------

    async def _watch_scout(self) -> None:
        names = {SETTINGS_NAME, *SECRETS_NAMES}
        requests = self.scout / REQUESTS_DIR
        secrets_dir = self._secrets_dir()

        def accept(path: Path) -> bool:
            if path.parent == self.scout:
                return path.name in names
            return path.parent == secrets_dir or is_request(path)

        while not self._watch_stop.is_set():
            try:
                requests.mkdir(parents=True, exist_ok=True)
                self._requests_dirty = True  # requests written before the watch began
                self._wake.set()
                folders = [self.scout, requests, *([secrets_dir] if secrets_dir else [])]
                async for changed in watch_files(folders, accept, self._watch_stop):
                    found = {p.name for p in changed if p.parent == self.scout}
                    if SETTINGS_NAME in found:
                        self._settings_dirty = True
                    if found & SECRETS_NAMES or any(p.parent == secrets_dir for p in changed):
                        self._secrets_dirty = True
                    if any(is_request(p) for p in changed):
                        self._requests_dirty = True
                    self._wake.set()
            except Exception:  # e.g. .scout/ removed: report, re-create, watch again
                logger.exception("watching %s failed; watching again in 1 s", self.scout)
                await asyncio.sleep(1.0)
                self.scout.mkdir(parents=True, exist_ok=True)
                self._settings_dirty = True
                self._wake.set()

    async def _loop(self) -> None:
        """The one consumer of changes: settings first, then plugin files, then secrets, then
        requests (`grambot retry|reload`)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                if self._settings_dirty:
                    self._settings_dirty = False
                    await self._refresh_settings()
                if self._tree_changes:
                    changes, self._tree_changes = self._tree_changes, set()
                    await self._plugin_files_changed(changes)
                if self._secrets_dirty:
                    self._secrets_dirty = False
                    await self._secrets_changed()
                if self._requests_dirty:
                    self._requests_dirty = False
                    flush = self.status.flush if self.status is not None else None
                    await handle_requests(self.scout / REQUESTS_DIR, self.engine, flush)
            except BaseException as exc:  # the loop survives anything but its own cancellation
                if engine_cancelled(exc):
                    raise
                logger.error(
                    "reconcile loop: unexpected error; carrying on",
                    extra={"event": "engine.error", "details": format_details(exc)},
                )
                del exc

    # -- plugin folders ------------------------------------------------------------------------

    def _restart_tree_watcher(self) -> None:
        # existing pluginDirs recursively; missing ones until they appear (grambot.app.watcher)
        self._plugin_watch.follow(self.engine.settings.plugin_dirs)

    def _plugin_files_seen(self, changed: set[Path]) -> None:
        self._tree_changes |= changed
        self._wake.set()

    async def _plugin_files_changed(self, changes: set[Path]) -> None:
        catalog_touched = any(
            p.name == "plugin.json" or p.is_dir() or not p.exists() for p in changes
        )
        before = {d.id: d.folder for d in self.engine.catalog.descriptors()}
        if catalog_touched:
            self.engine.rescan(self.engine.settings)
            after = {d.id: d.folder for d in self.engine.catalog.descriptors()}
            if after != before:
                added = sorted(set(after) - set(before))
                logger.info(
                    "plugin catalog changed%s: reconciling",
                    f" (new: {', '.join(added)})" if added else "",
                )
                await self.engine.reconcile()
            self._follow_sources()
        if not self.reload_plugins:
            return
        touched: set[str] = set()
        sources = self.engine.catalog.sources
        for descriptor in self.engine.catalog.descriptors():
            folders = [descriptor.folder, *filter(None, [sources.get(descriptor.id)])]
            if any(_inside(p, folder) for p in changes for folder in folders):
                touched.add(descriptor.id)
        for plugin_id in sorted(touched):
            ids = [
                i
                for i in self.engine.instances_of(plugin_id)
                if self.engine.state_of(i) in _RELOADABLE
            ]
            if ids:
                logger.info("plugin %s changed: reloading %s", plugin_id, ", ".join(ids))
                await self.engine.reload(ids)

    def _follow_sources(self) -> None:
        """--reload-plugins: watch the source folders of the plugin packages installed in
        editable mode (their direct_url.json; grambot.config.packages) like pluginDirs."""
        if not self.reload_plugins:
            return
        sources = tuple(sorted({s.resolve() for s in self.engine.catalog.sources.values()}))
        if sources != self._sources:
            self._sources = sources
            if sources:
                logger.info(
                    "following editable plugin packages in %s", ", ".join(map(str, sources))
                )
        self._source_watch.follow(sources)

    # -- secrets -------------------------------------------------------------------------------

    def _backend_switched(self) -> None:
        """Engine.apply switched the secrets backend: instances whose secrets differ there
        reload (as after an edit of secrets.json)."""
        self._secrets_dirty = True
        self._wake.set()

    def _digest(self, instance_id: str) -> str:
        store = self.secrets
        pairs = []
        for key in store.keys(instance_id):
            value = store.get(instance_id, key)  # read through: masked in logs from now on
            if value is not None:
                pairs.append(f"{len(key)}:{key}={len(value)}:{value}")
        return hashlib.blake2b("\n".join(pairs).encode(), digest_size=16).hexdigest()

    def _digests(self) -> dict[str, str] | None:
        ids = [i.instance_id for i in self.engine.instances()]
        try:
            self.external_secrets.learn()  # masked before any instance reads them
            return {i: self._digest(i) for i in ids}
        except SecretsError as exc:
            logger.error("cannot read secrets: %s", exc)
            return None

    def _snapshot_secrets(self) -> None:
        digests = self._digests()
        if digests is not None:
            self._secret_digests = digests

    def _own_secret_write(self, instance_id: str) -> None:
        """An instance changed its own secrets through `api.secrets`: no reload for that."""
        with contextlib.suppress(SecretsError):
            self._secret_digests[instance_id] = self._digest(instance_id)

    async def _secrets_changed(self) -> None:
        digests = self._digests()
        if digests is None:
            return
        changed = [i for i, d in digests.items() if self._secret_digests.get(i) != d]
        self._secret_digests = digests
        ids = [i for i in changed if self.engine.state_of(i) in _RELOADABLE]
        if not ids:
            logger.debug("secrets changed; no running instance is affected")
            return
        logger.info(
            "secrets of %s changed: reloading", ", ".join(ids), extra={"event": "secrets.changed"}
        )
        await self.engine.reload(ids)


async def _armed() -> None:
    """Let just-created watcher tasks run up to their first wait: watchfiles starts watching
    (synchronously) before it waits for the first change."""
    for _ in range(3):
        await asyncio.sleep(0)


def _inside(path: Path, folder: Path) -> bool:
    return path.is_relative_to(folder) or path.resolve().is_relative_to(folder)


async def run(
    workspace: Path,
    *,
    stop: asyncio.Event | None = None,
    reload_plugins: bool = False,
    shutdown_timeout: float = 60.0,
    heartbeat: float = 5.0,
    log_messages: bool = False,
) -> int:
    """Run the engine of `workspace` until SIGINT/SIGTERM (or `stop` is set); returns exit code.

    Raises `EngineLocked` when another engine runs in that workspace.
    """
    runtime = Runtime(
        workspace,
        reload_plugins=reload_plugins,
        shutdown_timeout=shutdown_timeout,
        heartbeat=heartbeat,
        log_messages=log_messages,
    )
    return await runtime.run(stop)
