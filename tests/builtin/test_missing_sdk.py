"""A built-in whose SDK is not installed: the instance fails with the reason
`missing-dependency`, is not retried, and its reason names the extra to install. The SDK is
made unimportable the way Python documents (None in sys.modules); the slow install tests
(tests/test_install.py) check the same in a real venv without the SDKs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from grambot.core.failures import classify
from grambot.core.instance import InstanceState
from grambot.errors import MissingDependency, SetupError
from tests.builtin.conftest import Harness

pytestmark = pytest.mark.timeout(60)

CASES = [
    ("anthropic", "anthropic", {"apiKey": "k"}, "pip install 'grambot[anthropic]'"),
    ("openai-codex", "openai", {"apiKey": "k"}, "pip install 'grambot[openai]'"),
    ("gpt-image", "openai", {"apiKey": "k"}, "pip install 'grambot[openai]'"),
    ("telegram", "telegram", {"botToken": "1:x"}, "pip install 'grambot[telegram]'"),
]


@pytest.mark.parametrize(("plugin_id", "module", "secrets", "install"), CASES)
async def test_a_builtin_without_its_sdk_fails_with_missing_dependency(
    harness: Harness,
    monkeypatch: pytest.MonkeyPatch,
    plugin_id: str,
    module: str,
    secrets: dict[str, str],
    install: str,
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # type: ignore[arg-type]
    harness.engine.retries = True
    state = await harness.load("it", plugin_id, secrets=secrets)
    assert state is InstanceState.FAILED  # not retrying: installing it is the fix
    record = harness.engine.instance("it")
    assert record is not None and record.failure is not None
    assert record.failure.kind == "missing-dependency"
    assert not record.failure.recoverable
    assert install in record.failure.message, record.failure.message


def test_a_module_not_found_for_an_sdk_of_an_extra_is_a_missing_dependency() -> None:
    exc = ModuleNotFoundError("No module named 'openai'", name="openai")
    failure = classify(exc, "load", lambda text: text)
    assert failure.kind == "missing-dependency" and not failure.recoverable
    assert "pip install 'grambot[openai]'" in failure.message
    other = ModuleNotFoundError("No module named 'numpy'", name="numpy")
    assert classify(other, "load", lambda text: text).kind == "load-error"


def test_missing_dependency_is_a_setup_error_naming_the_fix() -> None:
    error = MissingDependency("requests", "pip install requests", needed_by="plugin 'x'")
    assert isinstance(error, SetupError)
    assert str(error) == (
        "plugin 'x' needs the 'requests' package, which is not installed: pip install requests"
    )
    failure = classify(error, "create", lambda text: text)
    assert failure.kind == "missing-dependency" and not failure.recoverable


def test_the_keyring_backend_without_keyring_names_its_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from grambot.errors import SecretsError
    from grambot.secrets.backends import KeyringSecretsStore

    monkeypatch.setitem(sys.modules, "keyring", None)  # type: ignore[arg-type]
    store = KeyringSecretsStore("grambot:test", tmp_path / "secrets.lock")
    with pytest.raises(SecretsError, match=r"pip install 'grambot\[keyring\]'"):
        store.get("tg", "botToken")
