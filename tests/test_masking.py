"""One masker everywhere.

Every secret an instance can read (its own, and the shared vault secrets it read) is masked in
every form text shows it (as it is, repr/ascii/JSON-escaped, URL-encoded, and any 8+ character
fragment left at the edge of a cut, such as pydantic's truncated input values) wherever text
leaves the engine: log lines, status.json and `grambot status`, failure messages, health
reports, the bot's apologies and log, `grambot run-plugin`'s log and `error:` line. And
run-plugin's transient instances live in an id space of their own.

The fixture plugins (tests/fixtures/masking) quote secrets the way real plugin code does.
"""

from __future__ import annotations

import json
import os
import re
import reprlib
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from pydantic import BaseModel, ValidationError

import grambot.app.logs
import grambot.secrets.store
from grambot import CONNECTOR_MESSAGE
from grambot.app.status import StatusWriter
from grambot.engine import Engine
from grambot.errors import AccessDenied
from grambot.masking import MASK, Masker
from grambot.secrets.store import FileSecretsStore
from tests.helpers import FIXTURE_PLUGINS, Workspace, entry, eventually_async
from tests.runproc import EngineProcess, cli

MASKING_PLUGINS = Path(__file__).parent / "fixtures" / "masking"

# Long enough for pydantic to truncate, with every character the escapes change.
OWN = "own'S3cr3t\"q\\b/sl+pl=eq&amp Zq8xKp2LmN7vRt4WbY6cJh3GfD9sXe1Ua5Io0Pl"
SHARED = "sh4r3d S3cr3t/odd+chars=and&more Hy7TkW2qLp9ZxC4vBn8MjR3eGd6FaS1uYo5"
FORMS = ("raw", "repr", "json", "url", "url-plus", "pydantic", "pydantic-dict", "cut")


def shown_forms(secret: str) -> set[str]:
    """The ways a secret may be written out whole (the oracle's list, not the masker's)."""
    forms = {
        secret,
        repr(secret)[1:-1],
        ascii(secret)[1:-1],
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret, safe=""),
        quote_plus(secret),
    }
    return forms | {json.dumps(f)[1:-1] for f in forms} | {repr(f)[1:-1] for f in forms}


def leaks(text: str, *secrets: str) -> list[str]:
    """Every 8-character piece of any form of `secrets` found in `text`."""
    found = []
    for secret in secrets:
        for form in shown_forms(secret):
            for start in range(len(form) - 7):
                piece = form[start : start + 8]
                if piece in text:
                    found.append(piece)
    return sorted(set(found))


pytestmark = pytest.mark.usefixtures("keep_root_logging")


# -- the masker itself ---------------------------------------------------------------------------


def test_the_logs_and_everything_else_use_one_masker() -> None:
    assert grambot.app.logs.MASK is MASK
    # no second implementation of masking left beside it
    for name in ("redact", "redact_instance_secrets", "secret_forms"):
        assert not hasattr(grambot.secrets.store, name), name


@pytest.mark.parametrize("secret", [OWN, SHARED])
def test_every_whole_form_of_a_secret_is_masked(secret: str) -> None:
    masker = Masker()
    masker.add([secret])
    for form in sorted(shown_forms(secret)):
        text = f"before {form} after"
        masked = masker.apply(text)
        assert leaks(masked, secret) == [], (form, masked)
        assert masked.startswith("before ") and masked.endswith(" after") and "***" in masked
    lowered = re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(secret, safe=""))
    assert leaks(masker.apply(f"x {lowered} y"), secret) == []


def _short_repr(value: str) -> str:
    shortener = reprlib.Repr()
    shortener.maxstring = 30
    return shortener.repr(value)


class _Model(BaseModel):
    n: int


def _pydantic_error(value: Any) -> str:
    try:
        _Model.model_validate({"n": value})
    except ValidationError as exc:
        return str(exc)
    raise AssertionError("unreachable")


@pytest.mark.parametrize("secret", [OWN, SHARED])
def test_fragments_at_the_edge_of_a_cut_are_masked(secret: str) -> None:
    masker = Masker()
    masker.add([secret])
    cuts = {
        "pydantic": _pydantic_error(secret),
        "pydantic-long": _pydantic_error(f"prefix text {secret} and a long tail of words"),
        "pydantic-dict": _pydantic_error({"token": secret, "more": "x" * 40}),
        "reprlib": _short_repr(secret),
        "end of text": f"token={secret}"[:30],
        "start of text": f"token={secret}"[-30:],
        "end of a line": f"token={secret}"[:30] + "\nTraceback (most recent call last):",
        "ellipsis": f"{secret[:20]}… (truncated)",
        "json of a cut": json.dumps({"error": f"key {secret}"[:30]}),
    }
    for what, text in cuts.items():
        assert leaks(text, secret), what  # the oracle sees the fragment before masking
        masked = masker.apply(text)
        assert leaks(masked, secret) == [], (what, masked)
        assert "***" in masked, what


def test_short_fragments_and_ordinary_text_are_left_alone() -> None:
    masker = Masker()
    masker.add([SHARED, "abc"])  # 3 characters: too short to be masked without harm
    assert masker.apply("abc abcd the weather is fine") == "abc abcd the weather is fine"
    seven = SHARED[:7]
    assert masker.apply(f"cut: {seven}") == f"cut: {seven}"  # under 8: not a fragment
    assert masker.apply("line one\nline two...\n") == "line one\nline two...\n"


def test_values_are_learned_once_and_kept() -> None:
    masker = Masker()
    masker.add([SHARED])
    masker.add([SHARED, None, ""])
    assert masker.apply(SHARED) == "***"
    masker.add([OWN])
    assert masker.apply(f"{OWN} {SHARED}") == "*** ***"


# -- through the engine --------------------------------------------------------------------------


def _write(workspace: Workspace, plugins: list[dict[str, Any]], **keys: Any) -> Any:
    data = {"pluginDirs": [str(MASKING_PLUGINS), str(FIXTURE_PLUGINS)], "plugins": plugins}
    workspace.settings_file.write_text(json.dumps({**data, **keys}, indent=2))
    from grambot.config.settings import load_settings

    return load_settings(workspace.root)


def _secrets(engine: Engine, *instance_ids: str) -> None:
    for instance_id in instance_ids:
        engine.secrets.set(instance_id, "token", OWN)
    engine.secrets.set("shared/team", "key", SHARED)


def _where(source: str) -> str:
    return "own:token" if source == "own" else "shared/team/key"


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("source", ["own", "shared"])
async def test_a_failure_quoting_a_secret_is_masked_in_status_and_log(
    engine: Engine, workspace: Workspace, capsys: pytest.CaptureFixture[str], form: str, source: str
) -> None:
    grambot.app.logs.configure_logging("info", "text")
    _secrets(engine, "leak")
    settings = _write(
        workspace, [entry("leak", "leaky", secret=_where(source), form=form, fail=True)]
    )
    await engine.apply(settings)
    instance = engine.instance("leak")
    assert instance is not None and instance.failure is not None
    assert instance.failure.kind == "load-error"
    assert leaks(instance.failure.message + instance.failure.details, OWN, SHARED) == []
    writer = StatusWriter(workspace.scout, engine)
    try:
        writer.write_now()
        status = (workspace.scout / "status.json").read_text()
    finally:
        writer.close()
    assert leaks(status, OWN, SHARED) == [], status
    assert "***" in status
    err = capsys.readouterr().err
    assert "instance leak (plugin leaky) failed at load" in err
    assert leaks(err, OWN, SHARED) == [], err


@pytest.mark.parametrize("form", ["url", "pydantic", "cut"])
async def test_health_errors_and_plugin_logs_quoting_a_shared_secret_are_masked(
    engine: Engine, workspace: Workspace, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    grambot.app.logs.configure_logging("info", "json")
    _secrets(engine)
    settings = _write(
        workspace,
        [entry("watch", "leaky", secret="shared/team/key", form=form, health=True, log=True)],
    )
    await engine.apply(settings)
    instance = engine.instance("watch")
    assert instance is not None and not instance.healthy
    status = json.dumps(instance.to_status())
    assert "poll: Leak: " in status and leaks(status, SHARED) == [], status
    err = capsys.readouterr().err
    assert "about to call the service" in err and "the call failed" in err
    assert leaks(err, SHARED) == [], err


async def test_the_bots_apology_and_log_never_show_a_shared_secret(
    engine: Engine, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    grambot.app.logs.configure_logging("info", "text")
    _secrets(engine)
    plugins = [
        entry("chat", "fakechat"),
        entry("brain", "leaky", secret="shared/team/key", form="pydantic", provider=True),
    ]
    await engine.apply(_write(workspace, plugins, agent={"inference": "brain"}))
    connector = engine.registries.connectors.get("chat")
    assert connector is not None
    engine.queue.emit("fakechat", "chat", CONNECTOR_MESSAGE, {"chatId": "c", "text": "leak"})
    await eventually_async(lambda: connector.sent, timeout=5)
    (reply,) = connector.sent
    assert reply[1].startswith("Sorry, the inference provider 'brain' failed")
    assert leaks(reply[1], SHARED) == []
    err = capsys.readouterr().err
    assert "Traceback" in err and leaks(err, SHARED) == [], err


# -- in a real `grambot run` -----------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_grambot_run_masks_logs_status_json_and_grambot_status(tmp_path: Path) -> None:
    scout = tmp_path / ".scout"
    scout.mkdir()
    plugins = [
        entry("own-url", "leaky", secret="own:token", form="url", fail=True),
        entry("own-dict", "leaky", secret="own:token", form="pydantic-dict", fail=True),
        entry("shared-pyd", "leaky", secret="shared/team/key", form="pydantic", fail=True),
        entry("shared-raw", "leaky", secret="shared/team/key", form="raw", fail=True),
        entry(
            "shared-health", "leaky", secret="shared/team/key", form="cut", health=True, log=True
        ),
    ]
    (scout / "settings.json").write_text(
        json.dumps({"pluginDirs": [str(MASKING_PLUGINS)], "plugins": plugins})
    )
    store = FileSecretsStore(scout / "secrets.json")
    for instance_id in ("own-url", "own-dict"):
        store.set(instance_id, "token", OWN)
    store.set("shared/team", "key", SHARED)

    engine = EngineProcess(tmp_path)
    try:
        engine.wait_ready()
        engine.wait_for_log("failed at load", count=4)
        status_text = (scout / "status.json").read_text()
        assert "shared-health" in status_text and "poll: Leak" in status_text
        assert leaks(status_text, OWN, SHARED) == [], status_text
        for args in (["status"], ["status", "--json"]):
            shown = cli(tmp_path, *args)
            assert "own-url" in shown.stdout
            assert leaks(shown.stdout + shown.stderr, OWN, SHARED) == [], shown.stdout
    finally:
        engine.stop()
    assert leaks(engine.output, OWN, SHARED) == [], engine.output


# -- grambot run-plugin ---------------------------------------------------------------------------


def _run_plugin_ws(root: Path, plugins: list[dict[str, Any]] | None = None) -> Path:
    scout = root / ".scout"
    scout.mkdir(parents=True)
    (scout / "settings.json").write_text(
        json.dumps({"pluginDirs": [str(MASKING_PLUGINS)], "plugins": plugins or []})
    )
    FileSecretsStore(scout / "secrets.json").set("shared/team", "key", SHARED)
    return root


def _run_plugin(ws: Path, inputs: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "grambot",
            "run-plugin",
            "leaky-exec",
            "--input",
            json.dumps(inputs),
            "--workspace",
            str(ws),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ},
    )


@pytest.mark.parametrize("form", ["raw", "url", "json", "cut"])
def test_run_plugin_masks_its_log_and_its_error_line(tmp_path: Path, form: str) -> None:
    ws = _run_plugin_ws(tmp_path)
    done = _run_plugin(ws, {"action": "leak", "path": "shared/team/key", "form": form})
    assert done.returncode == 1
    assert "calling the service with" in done.stderr  # its log line is shown...
    error = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert error and "the service refused" in error[0] and "***" in error[0], done.stderr
    assert leaks(done.stderr + done.stdout, SHARED) == [], done.stderr  # ...masked


def test_run_plugin_lives_in_its_own_id_space(tmp_path: Path) -> None:
    ws = _run_plugin_ws(tmp_path, [entry("leaky-exec", "leaky-exec", enabled=False)])
    scout = ws / ".scout"
    FileSecretsStore(scout / "secrets.json").set("leaky-exec", "token", OWN)
    instance_dir = scout / "plugins" / "leaky-exec"
    instance_dir.mkdir(parents=True)
    (instance_dir / "instance-data.txt").write_text("the instance's own")

    who = _run_plugin(ws, {"action": "whoami"})
    assert who.returncode == 0, who.stderr
    identity = json.loads(who.stdout)
    assert identity["instance"] != "leaky-exec"
    assert Path(identity["data_dir"]) != instance_dir
    assert not Path(identity["data_dir"]).is_relative_to(scout / "plugins")
    files = _run_plugin(ws, {"action": "files"})
    assert files.returncode == 0 and "instance-data.txt" not in files.stdout

    stolen = _run_plugin(ws, {"action": "vault", "path": "leaky-exec/token"})
    assert stolen.returncode == 1 and "error: " in stolen.stderr
    assert leaks(stolen.stdout + stolen.stderr, OWN) == []


async def test_transient_runs_never_share_an_instances_data_secrets_or_cache(
    engine: Engine, workspace: Workspace
) -> None:
    engine.settings = _write(workspace, [entry("leaky-exec", "leaky-exec")])
    await engine.apply(engine.settings)
    engine.secrets.set("leaky-exec", "token", OWN)
    engine.cache.set("leaky-exec", "n", 100, None)  # the instance's own cache namespace

    identity = await engine.run_plugin("leaky-exec", {"action": "whoami"})
    assert identity["instance"] != "leaky-exec"
    assert Path(identity["data_dir"]) != workspace.data_dir("leaky-exec")
    assert await engine.run_plugin("leaky-exec", {"action": "cache"}) == 1
    assert await engine.run_plugin("leaky-exec", {"action": "cache"}) == 2  # its own, kept
    assert engine.cache.get("leaky-exec", "n") == 100
    with pytest.raises(AccessDenied):
        await engine.run_plugin("leaky-exec", {"action": "vault", "path": "leaky-exec/token"})
    shared = await engine.run_plugin("leaky-exec", {"action": "vault", "path": "shared/team/key"})
    assert shared is None  # no shared secret set in this store: allowed, but empty
