"""How a plugin says how it failed, and what makes the engine try again at once.

`grambot.NotReady` is retried with backoff, `grambot.SetupError` is not (`failed` until an edit,
a secret change or `grambot retry ID`); `ServiceError` is retried by its kind (never `auth`)
unless it says `retryable=`. Removing the owner of a conflicting registration retries the
instance that lost the conflict at once. `grambot retry` and `grambot reload` act on a running
engine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from grambot.engine import Engine
from tests.helpers import Workspace, entry, eventually, failure_of
from tests.runproc import cli, running, workspace_with

HOUR = {"initialDelay": 3600, "maxDelay": 3600}  # no retry fires by itself during a test


@pytest.mark.parametrize(
    ("mode", "state"),
    [
        ("not-ready", "retrying"),
        ("setup-error", "failed"),
        ("service:auth", "failed"),
        ("service:auth:yes", "retrying"),
        ("service:network", "retrying"),
        ("service:network:no", "failed"),
        ("service:bad-request", "failed"),
    ],
)
async def test_the_failure_says_whether_it_is_retried(
    retrying: Engine, workspace: Workspace, mode: str, state: str
) -> None:
    await retrying.apply(workspace.write([entry("h", "rogue", mode=mode)], retry=HOUR))
    instance = retrying.instance("h")
    assert instance is not None and str(instance.state) == state, instance
    assert instance.failure is not None and instance.failure.recoverable == (state == "retrying")


async def test_setup_error_keeps_the_plugins_message(
    retrying: Engine, workspace: Workspace
) -> None:
    await retrying.apply(workspace.write([entry("h", "rogue", mode="setup-error")], retry=HOUR))
    assert "this account cannot use the service" in failure_of(retrying, "h").message


async def test_retry_tries_a_failed_instance_again_now(
    retrying: Engine, workspace: Workspace
) -> None:
    await retrying.apply(workspace.write([entry("h", "rogue", mode="setup-error")], retry=HOUR))
    assert workspace.calls("h") == ["load", "unload"]
    assert await retrying.retry("h") is True
    assert workspace.calls("h") == ["load", "unload", "load", "unload"]
    assert await retrying.retry("nobody") is False


async def test_removing_the_owner_of_a_conflict_retries_the_other_at_once(
    retrying: Engine, workspace: Workspace
) -> None:
    await retrying.apply(workspace.write([entry("a", tool_name="shared")], retry=HOUR))
    both = [entry("a", tool_name="shared"), entry("b", tool_name="shared")]
    await retrying.apply(workspace.write(both, retry=HOUR))
    assert str(retrying.state_of("a")) == "loaded"
    assert str(retrying.state_of("b")) == "retrying"
    await retrying.apply(workspace.write([entry("b", tool_name="shared")], retry=HOUR))
    assert str(retrying.state_of("b")) == "loaded"  # not an hour later
    assert retrying.registries.tools.owner_of("shared") == "b"


def test_grambot_retry_and_reload_act_on_the_running_engine(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [entry("h", "rogue", mode="setup-error"), entry("p")], retry=HOUR)
    calls_h = ws / ".scout" / "plugins" / "h" / "calls.log"
    calls_p = ws / ".scout" / "plugins" / "p" / "calls.log"
    with running(ws) as engine:
        assert engine.states() == {"h": "failed", "p": "loaded"}
        again = cli(ws, "retry", "h")  # tried again, and it fails again: exit 1, why
        assert again.returncode == 1 and "h: failed" in again.stderr, again.stderr
        assert "this account cannot use the service" in again.stderr
        assert calls_h.read_text().split().count("load") == 2
        done = cli(ws, "reload", "p")
        assert done.returncode == 0, done.stderr
        reloaded = ["create", "load", "unload", "create", "load"]
        eventually(lambda: calls_p.read_text().split() == reloaded, what="p reloaded")
        refused = cli(ws, "retry", "nobody")
        assert refused.returncode == 1 and "nobody" in refused.stderr
    missing = cli(ws, "retry", "h")
    assert missing.returncode == 3, missing.stderr  # no engine runs


def test_a_secret_set_for_a_failed_instance_retries_it_at_once(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path, [entry("h", "rogue", mode="setup-error")], retry=HOUR)
    calls = ws / ".scout" / "plugins" / "h" / "calls.log"
    with running(ws) as engine:
        assert engine.states() == {"h": "failed"}
        done = subprocess.run(
            [sys.executable, "-m", "grambot", "secrets", "set", "h", "token", "-w", str(ws)],
            input="a-new-token-value\n",
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        eventually(lambda: calls.read_text().split().count("load") == 2, what="h tried again")


def test_a_missing_secret_waits_for_the_secret_not_for_time() -> None:
    """Waiting cannot bring a secret: `failed` with the kind missing-secret (no traceback: the
    message says the command), retried at once when the secret is set."""
    from grambot.core.failures import classify
    from grambot.errors import MissingSecret, SecretsError
    from grambot.secrets.store import InstanceSecrets

    class Empty:
        def get(self, instance_id: str, key: str) -> None:
            return None

    with pytest.raises(SecretsError) as raised:
        InstanceSecrets(Empty(), "tg").require("botToken")  # type: ignore[arg-type]
    assert isinstance(raised.value, MissingSecret)
    failure = classify(raised.value, "load", lambda text: text)
    assert failure.kind == "missing-secret" and failure.recoverable is False
    assert "grambot secrets set tg botToken" in failure.message
    assert failure.details == ""
