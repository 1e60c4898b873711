"""The tests' one way to wait (tests/helpers.py): the value on success, and on a timeout an
AssertionError that says what was awaited and what was last seen."""

from __future__ import annotations

import pytest

from tests.helpers import eventually, eventually_async


def test_the_first_truthy_value_is_returned() -> None:
    values = iter([0, [], "done"])
    assert eventually(lambda: next(values), timeout=1, interval=0) == "done"


def test_a_timeout_names_the_predicate_and_the_last_value() -> None:
    with pytest.raises(AssertionError) as failed:
        eventually(lambda: [] if True else [1], timeout=0.05)
    assert "lambda: [] if True else [1]" in str(failed.value)
    assert "last value: []" in str(failed.value)


def test_what_replaces_the_predicate_in_the_message() -> None:
    with pytest.raises(AssertionError, match=r"after 0.05 s waiting for the marker; last value: 0"):
        eventually(int, timeout=0.05, what="the marker")


async def test_the_async_variant_awaits_a_coroutine_predicate() -> None:
    calls = 0

    async def third_time() -> int:
        nonlocal calls
        calls += 1
        return calls if calls >= 3 else 0

    assert await eventually_async(third_time, timeout=1, interval=0) == 3
    with pytest.raises(AssertionError, match=r"waiting for .*never.*last value: False"):
        await eventually_async(lambda: "never" == "", timeout=0.05)
