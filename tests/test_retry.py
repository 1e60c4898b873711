"""Retry of recoverable failures: capped exponential backoff with jitter, cancelled by edits."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from grambot.core.instance import InstanceState
from grambot.engine import Engine
from grambot.retry import RetryPolicy, retry_policy_from
from tests.helpers import Workspace, entry, eventually_async


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    rand=st.floats(min_value=0, max_value=1),
    initial=st.floats(min_value=0.001, max_value=100),
)
def test_delay_is_exponential_capped_and_jittered(
    attempt: int, rand: float, initial: float
) -> None:
    policy = RetryPolicy(initial=initial, cap=max(initial, 50.0), jitter=0.2)
    delay = policy.delay(attempt, lambda: rand)
    base = min(policy.cap, initial * 2 ** min(attempt - 1, 64))
    assert 0 < delay <= policy.cap
    assert base * 0.8 - 1e-9 <= delay <= base * 1.2 + 1e-9


def test_delays_double_then_stay_at_the_cap() -> None:
    policy = RetryPolicy(initial=1, cap=10, jitter=0)
    assert [policy.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_retry_settings_are_validated_with_their_json_path(tmp_path: Path) -> None:
    file = tmp_path / "settings.json"
    policy, problems = retry_policy_from({"retry": {"initialDelay": 0.5, "maxDelay": 2}}, file)
    assert policy == RetryPolicy(initial=0.5, cap=2.0) and problems == []
    policy, problems = retry_policy_from({"retry": {"initialDelay": -1, "maxDelay": "x"}}, file)
    assert policy == RetryPolicy()
    assert [str(p) for p in problems] == [
        f"{file}: retry.initialDelay: retry.initialDelay must be a number greater than 0 (got -1)",
        f"{file}: retry.maxDelay: retry.maxDelay must be a number of seconds (got 'x')",
    ]
    _, problems = retry_policy_from({"retry": {"initialDelay": 5, "maxDelay": 1}}, file)
    assert problems and problems[0].json_path == "retry.maxDelay"


async def test_recoverable_failure_retries_with_attempt_and_next_attempt_at(
    retrying: Engine, workspace: Workspace
) -> None:
    settings = workspace.write(
        [entry("f", "flaky", failures=2)], retry={"initialDelay": 0.02, "maxDelay": 0.05}
    )
    await retrying.apply(settings)
    record = retrying.instance("f")
    assert record is not None and record.state is InstanceState.RETRYING
    (status,) = retrying.instances()
    assert status.attempt == 1 and status.next_attempt_at is not None
    assert status.failure is not None and "attempt 1 fails on purpose" in status.failure.message
    await eventually_async(lambda: retrying.state_of("f") is InstanceState.LOADED, timeout=5)
    (status,) = retrying.instances()
    assert status.attempt == 0 and status.next_attempt_at is None and status.failure is None
    assert (workspace.data_dir("f") / "loaded").read_text() == "3"


async def test_non_recoverable_failures_wait_for_an_edit(
    retrying: Engine, workspace: Workspace
) -> None:
    settings = workspace.write(
        [entry("ghost", "no-such-plugin"), entry("bad", "probe", fail_in=5)],
        retry={"initialDelay": 0.01, "maxDelay": 0.01},
    )
    await retrying.apply(settings)
    await asyncio.sleep(0.1)
    for instance_id in ("ghost", "bad"):
        record = retrying.instance(instance_id)
        assert record is not None and record.state is InstanceState.FAILED
        assert record.attempt == 0 and record.next_attempt_at is None
    assert workspace.calls("bad") == []


async def test_an_edit_cancels_the_pending_retry_and_applies_at_once(
    retrying: Engine, workspace: Workspace
) -> None:
    await retrying.apply(
        workspace.write([entry("p", fail_in="load")], retry={"initialDelay": 60, "maxDelay": 60})
    )
    record = retrying.instance("p")
    assert record is not None and record.state is InstanceState.RETRYING
    handle = record.retry_handle
    assert handle is not None
    started = time.monotonic()
    await retrying.apply(workspace.write([entry("p")], retry={"initialDelay": 60, "maxDelay": 60}))
    assert retrying.state_of("p") is InstanceState.LOADED
    assert time.monotonic() - started < 2
    assert handle.cancelled()
    assert workspace.calls("p") == ["create", "load", "unload", "create", "load"]


async def test_an_unchanged_entry_keeps_its_retry_schedule(
    retrying: Engine, workspace: Workspace
) -> None:
    settings = workspace.write(
        [entry("p", fail_in="load")], retry={"initialDelay": 60, "maxDelay": 60}
    )
    await retrying.apply(settings)
    record = retrying.instance("p")
    assert record is not None
    handle = record.retry_handle
    await retrying.apply(
        workspace.write(
            [entry("p", fail_in="load"), entry("q")], retry={"initialDelay": 60, "maxDelay": 60}
        )
    )
    assert retrying.instance("p") is record and record.retry_handle is handle
    assert handle is not None and not handle.cancelled()


async def test_removing_or_disabling_a_retrying_instance_cancels_its_retry(
    retrying: Engine, workspace: Workspace
) -> None:
    keys = {"retry": {"initialDelay": 0.05, "maxDelay": 0.05}}
    await retrying.apply(workspace.write([entry("p", fail_in="load")], **keys))
    await retrying.apply(workspace.write([entry("p", enabled=False, fail_in="load")], **keys))
    assert retrying.state_of("p") is InstanceState.DISABLED
    await asyncio.sleep(0.2)
    assert workspace.calls("p") == ["create", "load", "unload"]
    await retrying.apply(workspace.write([entry("q", fail_in="load")], **keys))
    await retrying.apply(workspace.write([], **keys))
    await asyncio.sleep(0.2)
    assert retrying.state_of("q") is None
    assert workspace.calls("q") == ["create", "load", "unload"]


async def test_shutdown_drops_pending_retries(retrying: Engine, workspace: Workspace) -> None:
    await retrying.apply(
        workspace.write([entry("p", fail_in="load")], retry={"initialDelay": 0.05, "maxDelay": 1})
    )
    await retrying.manager.unload_all()
    await asyncio.sleep(0.2)
    assert workspace.calls("p") == ["create", "load", "unload"]


async def test_without_retries_a_recoverable_failure_stays_failed(
    engine: Engine, workspace: Workspace
) -> None:
    await engine.apply(workspace.write([entry("p", fail_in="load")]))
    record = engine.instance("p")
    assert record is not None and record.state is InstanceState.FAILED
    assert record.failure is not None and record.failure.recoverable
    assert record.retry_handle is None
