"""Hostile input corpus (tests/corpus/): settings files, plugin descriptors, secrets stores.

Each input gets a clear error naming the file (and the JSON path where there is one), and has
no effect on what runs: a good state is applied first, then the hostile input, and the running
set, the probes' call logs and the registries must be exactly as before.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from grambot.config.descriptor import load_descriptor
from grambot.config.settings import MAX_FILE_BYTES
from grambot.core.instance import InstanceState
from grambot.engine import Engine
from grambot.errors import DescriptorError, SecretsError, SettingsError
from grambot.secrets.store import FileSecretsStore
from tests.helpers import FIXTURE_PLUGINS, Workspace
from tests.reliability.evidence import Evidence

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
FAULTY_PLUGINS = Path(__file__).resolve().parents[1] / "fixtures" / "faulty"
GOOD = json.dumps(
    {
        "plugins": [
            {"instanceId": "good1", "pluginId": "probe", "settings": {"tool_name": "good1-tool"}},
            {"instanceId": "good2", "pluginId": "probe", "settings": {"tool_name": "good2-tool"}},
        ]
    }
)


def _cases(kind: str) -> dict[str, dict[str, Any]]:
    cases: dict[str, dict[str, Any]] = json.loads((CORPUS / kind / "cases.json").read_text())
    return cases


SETTINGS_CASES = _cases("settings")
DESCRIPTOR_CASES = _cases("descriptors")
SECRETS_CASES = _cases("secrets")


def _snapshot(engine: Engine, workspace: Workspace) -> dict[str, Any]:
    tools = engine.registries.tools
    return {
        "loaded": sorted(engine.loaded_ids()),
        "states": {s.instance_id: str(s.state) for s in engine.manager.instances()},
        "calls": {i: workspace.calls(i) for i in ("good1", "good2")},
        "tools": {k: tools.owner_of(k) for k in tools},
    }


async def _good_state(engine: Engine, workspace: Workspace) -> dict[str, Any]:
    # The corpus files name no pluginDirs: the default `plugins/` of the workspace has probe.
    (workspace.root / "plugins").symlink_to(FIXTURE_PLUGINS, target_is_directory=True)
    workspace.settings_file.write_text(GOOD)
    await engine.apply(engine.read_settings())
    before = _snapshot(engine, workspace)
    assert before["loaded"] == ["good1", "good2"]
    return before


async def _apply_hostile(engine: Engine, workspace: Workspace, expect: dict[str, Any]) -> list[str]:
    """Read the hostile settings file as the runtime would; return the error texts."""
    path = workspace.settings_file
    if expect["level"] == "file":
        with pytest.raises(SettingsError) as caught:
            engine.read_settings()  # refused as a whole: nothing to apply
        texts = [str(p) for p in caught.value.problems]
        assert str(caught.value).startswith(str(path))
    else:
        settings = engine.read_settings()
        texts = [str(p) for p in settings.problems]
        assert texts, "a hostile entry went unreported"
        assert sorted(settings.held_instance_ids) == sorted(expect.get("held", []))
        await engine.apply(settings)
    assert all(text.startswith(str(path)) for text in texts), texts
    return texts


def _check_texts(texts: list[str], expect: dict[str, Any]) -> None:
    json_path = expect.get("json_path")
    matching = [
        t
        for t in texts
        if all(c in t for c in expect["contains"]) and (json_path is None or f": {json_path}:" in t)
    ]
    assert matching, (texts, expect)


@pytest.mark.parametrize("name", sorted(SETTINGS_CASES))
async def test_hostile_settings_file(
    name: str, engine: Engine, workspace: Workspace, evidence: Evidence
) -> None:
    expect = SETTINGS_CASES[name]
    before = await _good_state(engine, workspace)
    shutil.copyfile(CORPUS / "settings" / f"{name}.json", workspace.settings_file)
    texts = await _apply_hostile(engine, workspace, expect)
    _check_texts(texts, expect)
    assert _snapshot(engine, workspace) == before
    evidence.add(
        "hostile input: settings",
        f"settings file `{name}`",
        f"{'refused as a whole' if expect['level'] == 'file' else 'bad entries reported'}: "
        f"{texts[0][len(str(workspace.settings_file)) + 2 :][:120]}; running set unchanged",
    )


async def test_huge_settings_files(
    engine: Engine, workspace: Workspace, evidence: Evidence
) -> None:
    before = await _good_state(engine, workspace)
    path = workspace.settings_file
    # Over the limit: refused before parsing.
    path.write_text('{"plugins": [], "pad": "' + "x" * MAX_FILE_BYTES + '"}')
    with pytest.raises(SettingsError, match="larger than 5 MB") as caught:
        engine.read_settings()
    assert str(caught.value).startswith(str(path))
    assert _snapshot(engine, workspace) == before
    # Under the limit but with 5000 hostile entries next to the good ones: each one reported.
    good = json.loads(GOOD)["plugins"]
    bad = [{"instanceId": f"../evil{n}", "pluginId": "probe"} for n in range(5000)]
    path.write_text(json.dumps({"plugins": good + bad, "pad": "y" * 3_000_000}))
    settings = engine.read_settings()
    assert len(settings.problems) == 5000
    await engine.apply(settings)
    assert _snapshot(engine, workspace) == before
    evidence.add(
        "hostile input: settings",
        "a 5 MB + 1 byte settings file; a 3 MB file with 5000 hostile entries",
        "the first refused before parsing; each of the 5000 entries reported by JSON path; "
        "running set unchanged",
    )


def _descriptor_folder(tmp_path: Path, name: str) -> Path:
    """Copy one corpus plugin folder (and `outside.py`) into tmp_path; returns plugin.json."""
    shutil.copyfile(CORPUS / "descriptors" / "outside.py", tmp_path / "outside.py")
    shutil.copytree(CORPUS / "descriptors" / name, tmp_path / name)
    return tmp_path / name / "plugin.json"


def _symlink_cases(root: Path) -> dict[str, dict[str, Any]]:
    """Folders whose entry escapes through a symlink (made here: git keeps no symlinks)."""
    outside = root / "outside-dir"
    outside.mkdir()
    (outside / "plugin.py").write_text("raise RuntimeError('must never be imported')\n")
    (root / "outside.py").write_text("raise RuntimeError('must never be imported')\n")

    def folder(name: str, entry: str) -> Path:
        path = root / name
        path.mkdir()
        (path / "plugin.json").write_text(
            json.dumps({"id": name, "name": name, "description": "", "entry": entry})
        )
        return path

    (folder("entry-symlink-file", "plugin.py") / "plugin.py").symlink_to(root / "outside.py")
    (folder("entry-symlink-dir", "lib/plugin.py") / "lib").symlink_to(outside)
    loop = folder("entry-symlink-loop", "loop.py") / "loop.py"
    loop.symlink_to(loop)
    return {
        "entry-symlink-file": {"contains": ["outside the plugin folder"], "json_path": "entry"},
        "entry-symlink-dir": {"contains": ["outside the plugin folder"], "json_path": "entry"},
        "entry-symlink-loop": {
            "contains": ["cannot be resolved: symlink loop in", "loop.py"],
            "json_path": "entry",
        },
    }


def _check_descriptor_error(path: Path, expect: dict[str, Any]) -> str:
    with pytest.raises(DescriptorError) as caught:
        load_descriptor(path, source="pluginDir")
    texts = [str(p) for p in caught.value.problems]
    assert all(t.startswith(str(path)) for t in texts), texts
    _check_texts(texts, expect)
    return texts[0]


@pytest.mark.parametrize("name", sorted(DESCRIPTOR_CASES))
def test_hostile_descriptor(name: str, tmp_path: Path, evidence: Evidence) -> None:
    text = _check_descriptor_error(_descriptor_folder(tmp_path, name), DESCRIPTOR_CASES[name])
    evidence.add(
        "hostile input: descriptors",
        f"plugin.json `{name}`",
        f"DescriptorError: {text.split(': ', 1)[1][:120]}",
    )


def test_entry_escaping_through_a_symlink(tmp_path: Path, evidence: Evidence) -> None:
    for name, expect in _symlink_cases(tmp_path).items():
        text = _check_descriptor_error(tmp_path / name / "plugin.json", expect)
        evidence.add(
            "hostile input: descriptors",
            f"plugin.json `{name}` (symlink made by the test)",
            f"DescriptorError: {text.split(': ', 1)[1][:120]}",
        )


async def test_hostile_plugin_folders_do_not_disturb_the_running_set(
    engine: Engine, workspace: Workspace, tmp_path: Path, evidence: Evidence
) -> None:
    before = await _good_state(engine, workspace)
    hostile = tmp_path / "hostile"
    shutil.copytree(CORPUS / "descriptors", hostile)
    cases = {**DESCRIPTOR_CASES, **_symlink_cases(hostile)}
    settings = json.loads(GOOD)
    settings["pluginDirs"] = ["plugins", str(hostile)]
    # An instance of the hostile plugin's id must not import anything from those folders.
    settings["plugins"].append({"instanceId": "evil", "pluginId": "hostile"})
    workspace.settings_file.write_text(json.dumps(settings))
    await engine.apply(engine.read_settings())
    problems = [str(p) for p in engine.catalog.problems]
    for name in cases:
        assert any(f"{hostile / name}" in p for p in problems), name
    assert "probe" in engine.catalog.ids() and "hostile" not in engine.catalog.ids()
    record = engine.instance("evil")
    assert record is not None and record.failure is not None
    assert record.failure.kind == "plugin-not-found"
    after = _snapshot(engine, workspace)
    del after["states"]["evil"]
    assert after == before
    evidence.add(
        "hostile input: descriptors",
        f"a pluginDir holding all {len(cases)} hostile plugin folders, scanned by a running engine",
        "each one reported by the catalog with its path; none imported; the good plugins "
        "still found; running set unchanged",
    )


def _store_with(tmp_path: Path, content: bytes, mode: int = 0o600) -> FileSecretsStore:
    path = tmp_path / ".scout" / "secrets.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.chmod(path, mode)
    return FileSecretsStore(path)


@pytest.mark.parametrize("name", sorted(SECRETS_CASES))
def test_hostile_secrets_file(name: str, tmp_path: Path, evidence: Evidence) -> None:
    store = _store_with(tmp_path, (CORPUS / "secrets" / f"{name}.json").read_bytes())
    with pytest.raises(SecretsError) as caught:
        store.get("holder", "token")
    text = str(caught.value)
    assert text.startswith(str(store.path)), text
    assert all(c in text for c in SECRETS_CASES[name]["contains"]), text
    with pytest.raises(SecretsError):  # writing refuses too: it never overwrites what it can't read
        store.set("holder", "token", "new")
    assert store.path.read_bytes() == (CORPUS / "secrets" / f"{name}.json").read_bytes()
    evidence.add(
        "hostile input: secrets",
        f"secrets file `{name}`",
        f"SecretsError: {text[len(str(store.path)) + 2 :][:120]}",
    )


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o666])
def test_secrets_file_readable_by_others_is_refused(
    mode: int, tmp_path: Path, evidence: Evidence
) -> None:
    store = _store_with(tmp_path, b'{"holder": {"token": "abc"}}', mode)
    with pytest.raises(SecretsError, match=f"readable by others \\(mode {mode:o}\\).*chmod 600"):
        store.get("holder", "token")
    evidence.add(
        "hostile input: secrets",
        f"secrets file with mode {mode:o}",
        "refused, naming the path and `chmod 600`",
    )


def test_secrets_path_that_is_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.mkdir()
    with pytest.raises(SecretsError, match=r"not a regular file \(a folder\)"):
        FileSecretsStore(path).get("holder", "token")


async def test_corrupt_secrets_fail_only_the_instance_that_reads_them(
    engine: Engine, workspace: Workspace, evidence: Evidence
) -> None:
    before = await _good_state(engine, workspace)
    engine.secrets.set("holder", "token", "t0ken-value")
    doc = json.loads(GOOD)
    doc["pluginDirs"] = ["plugins", str(FAULTY_PLUGINS)]
    doc["plugins"].append({"instanceId": "holder", "pluginId": "secret-holder"})
    workspace.settings_file.write_text(json.dumps(doc))
    await engine.apply(engine.read_settings())
    assert engine.state_of("holder") is InstanceState.LOADED
    running = _snapshot(engine, workspace)
    # The store is corrupted while instances run; a new instance needing a secret is added.
    shutil.copyfile(CORPUS / "secrets" / "truncated.json", engine.scout_dir / "secrets.json")
    doc["plugins"].append({"instanceId": "newcomer", "pluginId": "secret-holder"})
    workspace.settings_file.write_text(json.dumps(doc))
    await engine.apply(engine.read_settings())
    record = engine.instance("newcomer")
    assert record is not None and record.state is InstanceState.FAILED and record.failure
    assert record.failure.kind == "create-error"
    assert f"SecretsError: {engine.scout_dir / 'secrets.json'}: not valid JSON" in (
        record.failure.message
    )
    after = _snapshot(engine, workspace)
    del after["states"]["newcomer"]
    assert after == running and after["calls"] == before["calls"]
    evidence.add(
        "hostile input: secrets",
        "the secrets store corrupted while instances run, then an instance needing a secret added",
        "that instance failed (create-error naming the file); running set unchanged",
    )
