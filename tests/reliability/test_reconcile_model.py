"""Model-based test of reconcile (hypothesis stateful testing).

Random sequences of settings edits (add, remove, enable, disable, change settings, change
pluginId, reorder keys and entries, rewrite unchanged, break one entry, break the whole file),
load failures (the probe's `fail_in`) and concurrent reconciles (asyncio.gather of
`sync_with_settings`) are applied to a real engine and to a small model of what reconcile
promises. A second machine runs the same with retries on (a RetryPolicy on the manager):
recoverable failures are `retrying`, and a `time_passes` step moves the event loop's clock past
the retry delay so that every pending retry fires at once (delays are an hour of that clock, so
no retry fires by itself). A `heal` step removes the outside cause of an instance's create/load
failure (the probe then ignores `fail_in`): a retry, or without retries the next edit, loads it.
After every step:

* the loaded set is the enabled-and-healthy set of the last valid settings (an entry that became
  invalid keeps its instance as it was, and so does a running instance whose edit names an
  unknown plugin or settings its schema refuses: validate before apply; an invalid file is not
  applied at all; an instance healed after its failure waits for its retry or an edit);
* every instance is in the modelled state: `failed` for what waiting cannot cure (unknown plugin,
  invalid settings) and, without retries, for every failure; with retries `retrying` with the
  modelled attempt count and a pending retry, which an edit of the entry, its removal or
  disabling cancels and an edit of other entries keeps;
* every instance's calls.log (create/load/unload, written by the probe) is exactly what the model
  expects, so each loaded instance was loaded exactly once since its last change and nothing was
  reloaded without a real change;
* the tool registry holds exactly the loaded instances' tools, owned by them, and sys.modules
  holds exactly one namespace per loaded instance.

Each test case gets its own event loop, workspace and engine. Sized for CI by default; `--slow`
runs many more and longer cases.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from grambot.config.settings import EngineSettings, load_settings, parse_settings
from grambot.containment.loader import NAMESPACE_ROOT
from grambot.core.instance import InstanceState
from grambot.engine import Engine
from grambot.errors import SettingsError
from grambot.retry import RetryPolicy
from tests.helpers import FIXTURE_PLUGINS, eventually_async
from tests.reliability.evidence import Evidence, slow_mode

# Sized for CI by default; --slow runs far more and may take minutes.
SIZED = pytest.mark.timeout(900 if slow_mode() else 60)

IDS = ("a", "b", "c", "d", "e")
PLUGINS = ("probe", "twin", "ghost")  # twin: a copy of probe under another id; ghost: unknown
FAILS = ("", "create", "load", "unload", "invalid")  # invalid: settings the schema refuses
LABELS = ("x", "y", "z")
BROKEN_VARIANTS = (
    {"enabled": "yes"},
    {"pluginId": "../evil"},
    {"settings": ["not", "an", "object"]},
    {"pluginId": 42},
)
LOADED, FAILED, DISABLED, RETRYING = "loaded", "failed", "disabled", "retrying"
RETRY_DELAY = 3600.0  # seconds of the loop's clock; only `time_passes` gets there

EXAMPLES, STEPS = (400, 50) if slow_mode() else (40, 25)
STATS = {
    "cases": 0,
    "steps": 0,
    "reconciles": 0,
    "concurrent": 0,
    "superseded": 0,
    "retries": 0,
    "retried_to_loaded": 0,
}


@dataclass(frozen=True)
class Spec:
    """One valid entry, as the model sees it."""

    plugin: str
    enabled: bool
    label: str
    fail: str

    def settings(self, instance_id: str) -> dict[str, Any]:
        fail: object = 5 if self.fail == "invalid" else self.fail
        return {"label": self.label, "fail_in": fail, "tool_name": f"t-{instance_id}"}

    def healthy(self, healed: bool) -> bool:
        if self.plugin == "ghost" or self.fail == "invalid":
            return False
        return healed or self.fail not in ("create", "load")


@dataclass
class Record:
    spec: Spec
    state: str
    attempt: int = 0  # with retries: failed attempts since the last change


class _ClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock can be moved forward, so that retry timers fire on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = 0.0

    def time(self) -> float:
        return super().time() + self.offset


def _entry(instance_id: str, spec: Spec, rng: random.Random | None) -> dict[str, Any]:
    settings_ = spec.settings(instance_id)
    entry = {
        "instanceId": instance_id,
        "pluginId": spec.plugin,
        "enabled": spec.enabled,
        "settings": settings_,
    }
    if rng is not None:  # the same data, keys in another order
        keys = list(settings_)
        rng.shuffle(keys)
        entry["settings"] = {k: settings_[k] for k in keys}
        order = list(entry)
        rng.shuffle(order)
        entry = {k: entry[k] for k in order}
    return entry


class ReconcileMachine(RuleBasedStateMachine):
    RETRIES = False

    def __init__(self) -> None:
        super().__init__()
        STATS["cases"] += 1
        self.tmp = Path(tempfile.mkdtemp(prefix="grambot-model-"))
        twin = self.tmp / "extra" / "twin"
        shutil.copytree(FIXTURE_PLUGINS / "probe", twin)
        descriptor = json.loads((twin / "plugin.json").read_text())
        (twin / "plugin.json").write_text(json.dumps({**descriptor, "id": "twin"}))
        self.root = self.tmp / "ws"
        (self.root / ".scout").mkdir(parents=True)
        self.plugin_dirs = [str(FIXTURE_PLUGINS), str(self.tmp / "extra")]
        self.loop = _ClockLoop()
        self.engine = Engine(self.root, builtin_dir=None, entry_points=False)
        if self.RETRIES:  # what Engine.apply sets from the `retry` key; reconciles go direct
            self.engine.applied = replace(
                self.engine.applied, retry_policy=RetryPolicy(initial=RETRY_DELAY, cap=RETRY_DELAY)
            )
        self.loop.run_until_complete(self.engine.event_engine.start())
        # The file as written: valid specs in file order; `broken` ids are written invalid.
        self.entries: dict[str, Spec] = {}
        self.broken: dict[str, dict[str, Any]] = {}
        self.order_seed: int | None = None
        # What reconcile promises, and what each probe must have logged.
        self.records: dict[str, Record] = {}
        self.calls: dict[str, list[str]] = {i: [] for i in IDS}
        # Instances whose create/load failure has passed (the probe ignores `fail_in`), and
        # those of them that failed before and have not been tried since.
        self.healed: set[str] = set()
        self.waiting: set[str] = set()
        self.engine.rescan(self._parse(self._document()))

    def teardown(self) -> None:
        try:
            self.loop.run_until_complete(self.engine.stop(drain_deadline=0.5))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- writing and applying --------------------------------------------------------------

    def _document(self) -> dict[str, Any]:
        rng = random.Random(self.order_seed) if self.order_seed is not None else None
        ids = list(self.entries)
        if rng is not None:
            rng.shuffle(ids)
        plugins = []
        for instance_id in ids:
            entry = _entry(instance_id, self.entries[instance_id], rng)
            plugins.append({**entry, **self.broken.get(instance_id, {})})
        return {"pluginDirs": self.plugin_dirs, "plugins": plugins}

    def _parse(self, document: dict[str, Any]) -> EngineSettings:
        path = self.root / ".scout" / "settings.json"
        return parse_settings(json.dumps(document), path=path, workspace=self.root)

    def _write_and_apply(self) -> None:
        path = self.root / ".scout" / "settings.json"
        path.write_text(json.dumps(self._document()))
        settings_ = load_settings(self.root)
        assert settings_.held_instance_ids == frozenset(self.broken)
        self._sync(settings_)
        self._model_reconcile()

    def _sync(self, settings_: EngineSettings) -> None:
        STATS["reconciles"] += 1
        applied = self.loop.run_until_complete(self.engine.manager.sync_with_settings(settings_))
        assert applied

    def _model_reconcile(self) -> None:
        desired = {i: s for i, s in self.entries.items() if i not in self.broken}
        held = set(self.broken)
        for instance_id, record in self.records.items():
            if instance_id in held or record.state != LOADED:
                continue
            new = desired.get(instance_id)
            if _held(record, new):
                continue  # the edit is refused: it keeps running as it was
            if new is None or not new.enabled or _differs(record.spec, new):
                self.calls[instance_id].append("unload")
                record.state = DISABLED
        for instance_id in list(self.records):
            if instance_id not in desired and instance_id not in held:
                del self.records[instance_id]
        for instance_id, spec in desired.items():
            current = self.records.get(instance_id)
            if not spec.enabled:
                self.records[instance_id] = Record(spec, DISABLED)
            elif current is not None and _held(current, spec):
                pass  # still running with its old entry
            elif current is None or current.state == DISABLED or _differs(current.spec, spec):
                self.records[instance_id] = self._model_load(instance_id, spec)
            else:
                current.spec = spec

    def _model_attempt(self, instance_id: str, spec: Spec) -> str | None:
        """Log the calls of one load attempt; None if it loads, else "recoverable" (may pass
        by waiting) or "permanent" (unknown plugin, invalid settings)."""
        self.waiting.discard(instance_id)
        if spec.plugin == "ghost" or spec.fail == "invalid":
            return "permanent"
        fail = "" if instance_id in self.healed else spec.fail
        calls = self.calls[instance_id]
        calls.append("create")
        if fail == "create":
            return "recoverable"
        calls.append("load")
        if fail == "load":
            calls.append("unload")  # a created instance whose load failed is unloaded
            return "recoverable"
        return None

    def _model_load(self, instance_id: str, spec: Spec) -> Record:
        failure = self._model_attempt(instance_id, spec)
        if failure is None:
            return Record(spec, LOADED)
        if failure == "recoverable" and self.RETRIES:
            return Record(spec, RETRYING, attempt=1)
        return Record(spec, FAILED)

    def _edit(self, instance_id: str, spec: Spec) -> None:
        self.entries[instance_id] = spec
        self.broken.pop(instance_id, None)  # editing an entry rewrites it whole and valid

    # -- rules -----------------------------------------------------------------------------

    @precondition(lambda self: len(self.entries) < len(IDS))
    @rule(
        data=st.data(),
        plugin=st.sampled_from(PLUGINS),
        enabled=st.booleans(),
        label=st.sampled_from(LABELS),
        fail=st.sampled_from(FAILS),
    )
    def add(self, data: st.DataObject, plugin: str, enabled: bool, label: str, fail: str) -> None:
        instance_id = data.draw(st.sampled_from([i for i in IDS if i not in self.entries]))
        self._edit(instance_id, Spec(plugin, enabled, label, fail))
        self._write_and_apply()

    def _existing(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from(sorted(self.entries)))

    def _change(self, data: st.DataObject, **fields: Any) -> None:
        """Edit one existing entry's `fields` and apply the file."""
        instance_id = self._existing(data)
        self._edit(instance_id, replace(self.entries[instance_id], **fields))
        self._write_and_apply()

    @precondition(lambda self: self.entries)
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        instance_id = self._existing(data)
        del self.entries[instance_id]
        self.broken.pop(instance_id, None)
        self._write_and_apply()

    @precondition(lambda self: self.entries)
    @rule(data=st.data(), enabled=st.booleans())
    def set_enabled(self, data: st.DataObject, enabled: bool) -> None:
        self._change(data, enabled=enabled)

    @precondition(lambda self: self.entries)
    @rule(data=st.data(), label=st.sampled_from(LABELS))
    def change_settings(self, data: st.DataObject, label: str) -> None:
        self._change(data, label=label)

    @precondition(lambda self: self.entries)
    @rule(data=st.data(), fail=st.sampled_from(FAILS))
    def change_failure(self, data: st.DataObject, fail: str) -> None:
        self._change(data, fail=fail)

    @precondition(lambda self: self.entries)
    @rule(data=st.data(), plugin=st.sampled_from(PLUGINS))
    def change_plugin(self, data: st.DataObject, plugin: str) -> None:
        self._change(data, plugin=plugin)

    @rule(seed=st.integers(0, 2**16))
    def reorder(self, seed: int) -> None:
        """Entries and keys in another order: the same data, nothing may reload."""
        self.order_seed = seed
        self._write_and_apply()

    @precondition(lambda self: any(i not in self.broken for i in self.entries))
    @rule(data=st.data(), variant=st.sampled_from(BROKEN_VARIANTS))
    def break_entry(self, data: st.DataObject, variant: dict[str, Any]) -> None:
        """One entry becomes invalid: its instance is held as it was."""
        instance_id = data.draw(st.sampled_from(sorted(set(self.entries) - set(self.broken))))
        self.broken[instance_id] = variant
        self._write_and_apply()

    @rule(cut=st.floats(0.0, 0.95))
    def break_file(self, cut: float) -> None:
        """A truncated file is refused as a whole and nothing changes."""
        text = json.dumps(self._document())
        path = self.root / ".scout" / "settings.json"
        path.write_text(text[: int(len(text) * cut)])
        try:
            load_settings(self.root)
        except SettingsError as exc:
            assert str(path) in str(exc)
        else:
            raise AssertionError("a truncated settings file was accepted")

    def _heal(self, instance_id: str) -> None:
        folder = self.root / ".scout" / "plugins" / instance_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "healed").write_text("")
        self.healed.add(instance_id)
        record = self.records.get(instance_id)
        if record is not None and record.state in (FAILED, RETRYING):
            self.waiting.add(instance_id)

    @precondition(lambda self: len(self.healed) < len(IDS))
    @rule(data=st.data())
    def heal(self, data: st.DataObject) -> None:
        """The outside cause of an instance's create/load failures goes away (one that is
        failing, if there is one)."""
        ids = [i for i in IDS if i not in self.healed]
        failing = [
            i for i in ids if i in self.records and self.records[i].state in (FAILED, RETRYING)
        ]
        self._heal(data.draw(st.sampled_from(failing or ids)))

    @precondition(lambda self: any(r.state == RETRYING for r in self.records.values()))
    @rule(data=st.data())
    def time_passes(self, data: st.DataObject) -> None:
        """The retry delay passes: every pending retry fires, one after the other (and the
        cause of one of their failures may have gone away meanwhile)."""
        manager = self.engine.manager
        due = {i: r.attempt for i, r in self.records.items() if r.state == RETRYING}
        if data.draw(st.integers(0, 3), label="heal one first if 0") == 0:
            self._heal(data.draw(st.sampled_from(sorted(due))))
        self.loop.offset += RETRY_DELAY + 1.0

        def tried(instance_id: str, attempt: int) -> bool:
            instance = manager.instance(instance_id)
            assert instance is not None
            return instance.state is InstanceState.LOADED or (
                instance.state is InstanceState.RETRYING and instance.attempt > attempt
            )

        settled = eventually_async(
            lambda: all(tried(i, attempt) for i, attempt in due.items()), 20, 0.001
        )
        self.loop.run_until_complete(settled)
        for instance_id in due:
            STATS["retries"] += 1
            record = self.records[instance_id]
            if self._model_attempt(instance_id, record.spec) is None:
                STATS["retried_to_loaded"] += 1
                record.state, record.attempt = LOADED, 0
            else:
                record.attempt += 1

    # A second name for the same rule: hypothesis picks among rules evenly (and leaves some out
    # of each case), and this one is the only way retries fire.
    time_passes_again = time_passes

    @precondition(lambda self: self.entries)
    @rule(data=st.data(), count=st.integers(2, 3))
    def concurrent_edits(self, data: st.DataObject, count: int) -> None:
        """`count` edits reconciled concurrently: the last one wins and none loads twice."""
        STATS["concurrent"] += 1
        versions: list[tuple[EngineSettings, dict[str, Spec], dict[str, dict[str, Any]]]] = []
        for _ in range(count):
            instance_id = data.draw(st.sampled_from(IDS))
            spec = Spec(
                data.draw(st.sampled_from(PLUGINS)),
                data.draw(st.booleans()),
                data.draw(st.sampled_from(LABELS)),
                data.draw(st.sampled_from(FAILS)),
            )
            if data.draw(st.booleans(), label="remove instead") and instance_id in self.entries:
                del self.entries[instance_id]
                self.broken.pop(instance_id, None)
            else:
                self._edit(instance_id, spec)
            versions.append((self._parse(self._document()), dict(self.entries), dict(self.broken)))

        async def together() -> list[bool]:
            manager = self.engine.manager
            return list(await asyncio.gather(*(manager.sync_with_settings(v[0]) for v in versions)))

        STATS["reconciles"] += count
        results = self.loop.run_until_complete(together())
        assert results[0] and results[-1]  # the first runs at once, the last always runs
        STATS["superseded"] += results.count(False)
        final = (self.entries, self.broken)
        for (_, entries, broken), applied in zip(versions, results, strict=True):
            if applied:
                self.entries, self.broken = entries, broken
                self._model_reconcile()
        self.entries, self.broken = final
        (self.root / ".scout" / "settings.json").write_text(json.dumps(self._document()))

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def matches_the_model(self) -> None:
        STATS["steps"] += 1
        manager = self.engine.manager
        loaded = sorted(manager.loaded_ids())
        # The loaded set is the enabled-and-healthy set of the last valid settings (a held
        # instance counts as it was).
        expected = sorted(
            i
            for i, r in self.records.items()
            if r.spec.enabled and r.spec.healthy(i in self.healed) and i not in self.waiting
        )
        assert loaded == expected
        assert loaded == sorted(i for i, r in self.records.items() if r.state == LOADED)
        for instance_id in IDS:
            record = self.records.get(instance_id)
            state = manager.state_of(instance_id)
            if record is None:
                assert state is None, instance_id
                continue
            assert state is InstanceState(record.state), (instance_id, state, record)
            actual = manager.instance(instance_id)
            assert actual is not None and actual.attempt == record.attempt, (instance_id, actual)
            handle = actual.retry_handle
            if record.state == RETRYING:  # a retry is pending
                assert handle is not None and not handle.cancelled(), instance_id
                assert actual.next_attempt_at is not None
            else:
                assert handle is None and actual.next_attempt_at is None, instance_id
            if record.state == FAILED and self.RETRIES:  # only what waiting cannot cure
                assert actual.failure is not None and not actual.failure.recoverable
            log = self.root / ".scout" / "plugins" / instance_id / "calls.log"
            logged = log.read_text().split() if log.exists() else []
            assert logged == self.calls[instance_id], instance_id
        tools = self.engine.registries.tools
        assert {k: tools.owner_of(k) for k in tools} == {f"t-{i}": i for i in loaded}
        namespaces = sorted(
            name.split(".")[2].rsplit("__", 1)[0]
            for name in sys.modules
            if name.startswith(NAMESPACE_ROOT + ".") and name.count(".") == 2
        )
        assert namespaces == loaded  # exactly one namespace per loaded instance


def _differs(old: Spec, new: Spec) -> bool:
    """What reconcile compares: the plugin id and the settings as data."""
    return old.plugin != new.plugin or (old.label, old.fail) != (new.label, new.fail)


def _held(record: Record, new: Spec | None) -> bool:
    """Validate before apply: a running instance whose changed entry names an unknown plugin
    or settings its schema refuses keeps running with its old entry."""
    return (
        record.state == LOADED
        and new is not None
        and new.enabled
        and _differs(record.spec, new)
        and (new.plugin == "ghost" or new.fail == "invalid")
    )


class RetryingReconcileMachine(ReconcileMachine):
    RETRIES = True

    @initialize(
        fails=st.lists(st.sampled_from(("create", "load")), min_size=1, max_size=3),
        plugin=st.sampled_from(PLUGINS[:2]),
    )
    def start_with_failures(self, fails: list[str], plugin: str) -> None:
        """Each case starts with instances whose create or load fails, so there are retries."""
        for instance_id, fail in zip(IDS, fails, strict=False):
            self._edit(instance_id, Spec(plugin, True, "x", fail))
        self._write_and_apply()


def _run(machine: type[ReconcileMachine]) -> dict[str, int]:
    before = dict(STATS)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    ran = {key: STATS[key] - before[key] for key in STATS}
    assert ran["cases"] >= EXAMPLES and ran["concurrent"] > 0
    return ran


TRIED = (
    "add, remove, enable/disable, change settings, change pluginId, reorder keys and entries, "
    "break one entry, truncate the file, load failures (create/load/unload, unknown plugin, "
    "invalid settings), heal a failure's outside cause, 2-3 concurrent reconciles"
)
HELD = (
    "after every step: loaded set = enabled-and-healthy set of the last valid settings; "
    "each probe's create/load/unload log exactly as modelled (loaded once per change, no "
    "reload without a real change); tool registry and sys.modules = loaded instances"
)


@SIZED
def test_reconcile_matches_its_model(evidence: Evidence) -> None:
    ran = _run(ReconcileMachine)
    evidence.add(
        "model-based reconcile",
        f"{ran['cases']} random cases of up to {STEPS} steps, retries off: {TRIED}",
        f"{HELD}; every failure stays `failed` until its entry changes",
        cases=ran["cases"],
        steps=ran["steps"],
        reconciles=ran["reconciles"],
        concurrent_batches=ran["concurrent"],
        superseded=ran["superseded"],
    )


@SIZED
def test_reconcile_with_retries_matches_its_model(evidence: Evidence) -> None:
    ran = _run(RetryingReconcileMachine)
    assert ran["retries"] > 0 and ran["retried_to_loaded"] > 0
    evidence.add(
        "model-based reconcile",
        f"{ran['cases']} random cases of up to {STEPS} steps, retries on: the same steps, plus "
        "the retry delay passing (every pending retry fires)",
        f"{HELD}; recoverable failures `retrying` with the modelled attempt count and a pending "
        "retry (cancelled by an edit, removal or disabling of the entry, kept across edits of "
        "others and while the entry is invalid), loaded by the retry after a heal; unknown "
        "plugin and invalid settings `failed` and never retried",
        cases=ran["cases"],
        steps=ran["steps"],
        reconciles=ran["reconciles"],
        retries_fired=ran["retries"],
        retries_that_loaded=ran["retried_to_loaded"],
        concurrent_batches=ran["concurrent"],
    )
