"""Secrets for containers: GRAMBOT_SECRET__<instanceId>__<key> variables and
the GRAMBOT_SECRETS_DIR folder, ahead of the store, scoped, masked, watched; the CLI says where
each key comes from and refuses to store over one."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from grambot.cli import main
from grambot.config.descriptor import PluginDescriptor
from grambot.contract.context import InstanceEnv
from grambot.errors import AccessDenied, SecretsError
from grambot.masking import MASK
from grambot.secrets.backends import SecretsConfig, open_store, store_instance_ids
from grambot.secrets.sources import ExternalSecrets, LayeredSecretsStore
from grambot.secrets.store import FileSecretsStore, InstanceSecrets
from tests.helpers import entry, eventually
from tests.runproc import EngineProcess, running, workspace_with

ENV_TOKEN = "env-token-5c1e9a77"
DIR_TOKEN = "dir-token-0b8d22f4"
STORE_TOKEN = "store-token-9e3f6a10"


pytestmark = pytest.mark.usefixtures("keep_root_logging")


def _store(tmp_path: Path) -> FileSecretsStore:
    store = FileSecretsStore(tmp_path / ".scout" / "secrets.json")
    store.set("tg", "botToken", STORE_TOKEN)
    store.set("tg", "other", "only-in-the-store")
    return store


def _secrets_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "run-secrets"
    folder.mkdir(exist_ok=True)
    for name, value in files.items():
        (folder / name).write_text(value)
    return folder


def _layered(tmp_path: Path, env: dict[str, str]) -> LayeredSecretsStore:
    store = open_store(tmp_path, SecretsConfig(), ExternalSecrets(env))
    assert isinstance(store, LayeredSecretsStore)
    _store(tmp_path)
    return store


def test_variables_win_over_the_folder_which_wins_over_the_store(tmp_path: Path) -> None:
    folder = _secrets_dir(tmp_path, {"tg__botToken": DIR_TOKEN + "\n", "tg__apiKey": "dk-1\r\n"})
    env = {"GRAMBOT_SECRETS_DIR": str(folder)}
    store = _layered(tmp_path, env)
    assert store.get("tg", "botToken") == DIR_TOKEN  # one trailing newline stripped
    assert store.get("tg", "apiKey") == "dk-1"
    assert store.get("tg", "other") == "only-in-the-store"
    assert store.keys("tg") == ["apiKey", "botToken", "other"]

    env["GRAMBOT_SECRET__tg__botToken"] = ENV_TOKEN
    store = _layered(tmp_path, env)
    assert store.get("tg", "botToken") == ENV_TOKEN
    sources = {k: (o.source, o.where) for k, o in store.sources("tg").items()}
    assert sources == {
        "apiKey": ("dir", str(folder / "tg__apiKey")),
        "botToken": ("env", "GRAMBOT_SECRET__tg__botToken"),
        "other": ("store", ""),
    }
    # what an instance sees through api.secrets
    assert InstanceSecrets(store, "tg").get("botToken") == ENV_TOKEN


def test_without_either_the_store_is_opened_as_before(tmp_path: Path) -> None:
    store = open_store(tmp_path, SecretsConfig(), ExternalSecrets({"PATH": "/bin"}))
    assert isinstance(store, FileSecretsStore)


def test_empty_values_count_as_unset(tmp_path: Path) -> None:
    folder = _secrets_dir(tmp_path, {"tg__botToken": "\n"})
    env = {"GRAMBOT_SECRETS_DIR": str(folder), "GRAMBOT_SECRET__tg__other": ""}
    store = _layered(tmp_path, env)
    assert store.get("tg", "botToken") == STORE_TOKEN
    assert store.get("tg", "other") == "only-in-the-store"
    assert {k: o.source for k, o in store.sources("tg").items()} == {
        "botToken": "store",
        "other": "store",
    }


def test_each_secret_stays_with_the_instance_it_names(tmp_path: Path) -> None:
    folder = _secrets_dir(
        tmp_path, {"other__botToken": "theirs-1234", "a__b__c": "split-at-first", "loose": "x"}
    )
    env = {"GRAMBOT_SECRETS_DIR": str(folder), "GRAMBOT_SECRET__bot2__apiKey": "k-2222"}
    store = _layered(tmp_path, env)
    assert store.get("tg", "apiKey") is None and "apiKey" not in store.keys("tg")
    assert store.get("other", "botToken") == "theirs-1234"
    assert store.keys("bot2") == ["apiKey"]
    # a name is split at its first "__": instance "a", key "b__c"; "a__b" gets nothing
    assert store.get("a", "b__c") == "split-at-first"
    assert store.get("a__b", "c") is None and store.keys("a__b") == []
    assert store_instance_ids(store) == ["a", "bot2", "other", "tg"]


def test_names_that_do_not_parse_are_reported_once_and_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _secrets_dir(tmp_path, {"no-separator": "x", "bad id__key": "y", ".hidden": "z"})
    (folder / "..data").mkdir()  # what Kubernetes mounts beside the files: silently skipped
    env = {"GRAMBOT_SECRETS_DIR": str(folder), "GRAMBOT_SECRET__nokey": "value-1"}
    with caplog.at_level(logging.WARNING):
        external = ExternalSecrets(env)
        store = LayeredSecretsStore(FileSecretsStore(tmp_path / "s.json"), external)
        assert store_instance_ids(store) == []
        assert store_instance_ids(store) == []
    messages = [r.getMessage() for r in caplog.records]
    assert sum("no-separator" in m for m in messages) == 1, messages
    assert sum("bad id__key" in m for m in messages) == 1, messages
    assert sum("GRAMBOT_SECRET__nokey" in m for m in messages) == 1, messages
    assert not any(".hidden" in m or "..data" in m for m in messages), messages
    assert "value-1" not in caplog.text


@pytest.mark.timeout(10)
def test_a_fifo_in_the_folder_is_never_opened(tmp_path: Path) -> None:
    folder = _secrets_dir(tmp_path, {})
    os.mkfifo(folder / "tg__botToken")  # opening it for reading would block forever
    store = _layered(tmp_path, {"GRAMBOT_SECRETS_DIR": str(folder)})
    assert store.keys("tg") == ["botToken", "other"]  # the store's; the FIFO is skipped
    with pytest.raises(SecretsError, match=r"tg__botToken: not a regular file \(a FIFO\)"):
        store.get("tg", "botToken")


def test_storing_over_a_key_from_the_environment_is_refused_with_the_reason(
    tmp_path: Path,
) -> None:
    folder = _secrets_dir(tmp_path, {"tg__apiKey": "dk-12345"})
    env = {"GRAMBOT_SECRETS_DIR": str(folder), "GRAMBOT_SECRET__tg__botToken": ENV_TOKEN}
    store = _layered(tmp_path, env)
    with pytest.raises(SecretsError, match="environment variable GRAMBOT_SECRET__tg__botToken"):
        store.set("tg", "botToken", "new-value")
    with pytest.raises(SecretsError, match=r"the file .*tg__apiKey \(GRAMBOT_SECRETS_DIR\)"):
        InstanceSecrets(store, "tg").set("apiKey", "new-value")
    with pytest.raises(SecretsError, match="takes precedence over the secrets store"):
        store.delete("tg", "botToken")
    assert store.inner.get("tg", "botToken") == STORE_TOKEN  # untouched
    store.set("tg", "fresh", "fresh-value")  # keys of nobody else's are stored as ever
    assert store.inner.get("tg", "fresh") == "fresh-value"


def test_values_are_masked_before_anything_reads_them(tmp_path: Path) -> None:
    env_value, dir_value = "env-never-read-4d2c", "dir-never-read-7a1b"
    folder = _secrets_dir(tmp_path, {"idle__key": dir_value})
    env = {"GRAMBOT_SECRETS_DIR": str(folder), "GRAMBOT_SECRET__idle__other": env_value}
    external = ExternalSecrets(env)
    LayeredSecretsStore(FileSecretsStore(tmp_path / "s.json"), external)
    assert env_value not in MASK.apply(f"x {env_value} y")
    external.learn()  # what the running engine does at start and on every change
    assert MASK.apply(f"x {dir_value} y") == "x *** y"


def test_api_env_never_shows_a_secret_variable_even_when_allowed(tmp_path: Path) -> None:
    name = "GRAMBOT_SECRET__other__botToken"
    descriptor = PluginDescriptor(
        id="p",
        name="p",
        description="",
        entry="plugin.py",
        folder=tmp_path,
        entry_path=tmp_path / "plugin.py",
        descriptor_path=tmp_path / "plugin.json",
        source="custom",
        allowed_env=(name, "PLAIN"),
        raw={},
    )
    env = InstanceEnv(descriptor, "mine", {name: "theirs-1234", "PLAIN": "ok"})
    with pytest.raises(AccessDenied, match="instances' secrets"):
        env[name]
    with pytest.raises(AccessDenied):
        env.get(name)
    assert name not in env and list(env) == ["PLAIN"] and len(env) == 1


# -- the CLI ----------------------------------------------------------------------------------


def _cli(ws: Path, env: dict[str, str], *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, [*args, "--workspace", str(ws)], input=input, env=env)


def _cli_ws(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    ws = workspace_with(tmp_path / "ws", [entry("tg", "marker")])
    _store(ws)
    folder = _secrets_dir(tmp_path, {"tg__apiKey": "dk-12345\n"})
    env = {"GRAMBOT_SECRETS_DIR": str(folder), "GRAMBOT_SECRET__tg__botToken": ENV_TOKEN}
    return ws, env


def test_secrets_list_says_where_each_key_comes_from(tmp_path: Path) -> None:
    ws, env = _cli_ws(tmp_path)
    one = _cli(ws, env, "secrets", "list", "tg")
    assert one.exit_code == 0, one.output
    assert [line.split() for line in one.output.splitlines()] == [
        ["apiKey", "dir", str(tmp_path / "run-secrets" / "tg__apiKey")],
        ["botToken", "env", "GRAMBOT_SECRET__tg__botToken"],
        ["other", "store"],
    ]
    every = _cli(ws, env, "secrets", "list")
    assert "tg: apiKey (dir), botToken (env), other (store)" in every.output, every.output
    for result in (one, every):
        assert ENV_TOKEN not in result.output and "dk-12345" not in result.output
    shown = _cli(ws, env, "secrets", "get", "tg", "botToken", "--reveal")
    assert shown.output == ENV_TOKEN + "\n"


def test_secrets_set_and_delete_refuse_keys_from_the_environment(tmp_path: Path) -> None:
    ws, env = _cli_ws(tmp_path)
    refused = _cli(ws, env, "secrets", "set", "tg", "botToken", input="new-value-123\n")
    assert refused.exit_code == 1
    assert "cannot store tg/botToken" in refused.output
    assert "environment variable GRAMBOT_SECRET__tg__botToken" in refused.output
    refused = _cli(ws, env, "secrets", "delete", "tg", "apiKey")
    assert refused.exit_code == 1 and "GRAMBOT_SECRETS_DIR" in refused.output, refused.output
    stored = json.loads((ws / ".scout" / "secrets.json").read_text())
    assert stored["tg"] == {"botToken": STORE_TOKEN, "other": "only-in-the-store"}
    assert _cli(ws, env, "secrets", "set", "tg", "fresh", input="fresh-1\n").exit_code == 0


# -- a running engine -------------------------------------------------------------------------


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def test_a_running_engine_uses_and_follows_the_secrets_folder(tmp_path: Path) -> None:
    folder = _secrets_dir(tmp_path, {"s__token": DIR_TOKEN + "\n"})
    ws = workspace_with(
        tmp_path / "ws", [entry("s", "secretive")], retry={"initialDelay": 60, "maxDelay": 60}
    )
    token_sha = ws / ".scout" / "plugins" / "s" / "token_sha"
    with running(ws, env={"GRAMBOT_SECRETS_DIR": str(folder)}) as engine:
        engine.wait_states({"s": "loaded"})
        assert token_sha.read_text() == _sha(DIR_TOKEN)
        # an update as Kubernetes makes it: a new file renamed over the old one
        (folder / ".new").write_text("second-dir-value")
        os.replace(folder / ".new", folder / "s__token")
        eventually(lambda: token_sha.read_text() == _sha("second-dir-value"), what="reload")
        (folder / "s__token").unlink()  # gone: the instance waits for its secret again
        engine.wait_states({"s": "failed"})
        assert (engine.status() or {})["instances"][0]["reason"] == "missing-secret"
    assert DIR_TOKEN not in engine.output and "second-dir-value" not in engine.output
    assert "loaded with token ***" in engine.output
    assert "secrets of s changed: reloading" in engine.output


def test_a_running_engine_takes_secrets_from_variables(tmp_path: Path) -> None:
    ws = workspace_with(tmp_path / "ws", [entry("s", "secretive")])
    with running(ws, env={"GRAMBOT_SECRET__s__token": ENV_TOKEN}) as engine:
        engine.wait_states({"s": "loaded"})
        sha = (ws / ".scout" / "plugins" / "s" / "token_sha").read_text()
        assert sha == _sha(ENV_TOKEN)
        status = subprocess.run(
            [sys.executable, "-m", "grambot", "status", "--json", "-w", str(ws)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert ENV_TOKEN not in status.stdout
    assert ENV_TOKEN not in engine.output
    assert "1 from GRAMBOT_SECRET__* variables" in engine.output


def _kubernetes_secret(folder: Path, version: str, values: dict[str, str]) -> None:
    """Write `values` the way the kubelet updates a Secret volume: a new hidden folder, a
    `..data_tmp` link to it renamed over `..data`, and per-key links through `..data`."""
    data = folder / f"..{version}"
    data.mkdir()
    for name, value in values.items():
        (data / name).write_text(value)
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(Path("..data") / name)
    (folder / "..data_tmp").symlink_to(data.name)
    os.replace(folder / "..data_tmp", folder / "..data")


def test_a_running_engine_follows_a_kubernetes_secret_volume(tmp_path: Path) -> None:
    folder = tmp_path / "k8s"
    folder.mkdir()
    _kubernetes_secret(folder, "v1", {"s__token": DIR_TOKEN})
    ws = workspace_with(tmp_path / "ws", [entry("s", "secretive")])
    token_sha = ws / ".scout" / "plugins" / "s" / "token_sha"
    engine = EngineProcess(ws, env={"GRAMBOT_SECRETS_DIR": str(folder)})
    try:
        engine.wait_states({"s": "loaded"})
        assert token_sha.read_text() == _sha(DIR_TOKEN)
        _kubernetes_secret(folder, "v2", {"s__token": "rotated-by-kubelet"})
        eventually(lambda: token_sha.read_text() == _sha("rotated-by-kubelet"), what="reload")
    finally:
        assert engine.stop() == 0, engine.output
    assert "rotated-by-kubelet" not in engine.output and "..data" not in engine.output


def test_remove_purge_deletes_the_stored_secrets_and_leaves_the_environments(
    tmp_path: Path,
) -> None:
    ws, env = _cli_ws(tmp_path)
    done = _cli(ws, env, "remove", "tg", "--purge")
    assert done.exit_code == 0, done.output
    assert "tg" not in json.loads((ws / ".scout" / "secrets.json").read_text())
    assert (tmp_path / "run-secrets" / "tg__apiKey").exists()
