"""Fuzzing the parsers with generated JSON (hypothesis): only grambot's own errors come out.

settings.json, plugin.json and secrets.json get random JSON values, documents shaped almost
like the real thing, and raw bytes. Whatever they are, the parser either accepts them or raises
its own error type (SettingsError / DescriptorError / SecretsError) naming the file; accepted
descriptors always have an entry inside their folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grambot.config.descriptor import load_descriptor
from grambot.config.settings import EngineSettings, parse_settings
from grambot.errors import DescriptorError, SecretsError, SettingsError
from grambot.secrets.store import FileSecretsStore
from tests.reliability.evidence import Evidence, slow_mode

# Sized for CI by default; --slow runs far more and may take minutes.
pytestmark = pytest.mark.timeout(900 if slow_mode() else 60)

EXAMPLES = 5000 if slow_mode() else 300
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,  # every run explores afresh
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
hostile_ids = st.sampled_from(
    ["a", "A", "good1", "GOOD1", "../x", "a/b", "", "x" * 65, "a\x00b", "\u202eab", "g\u043eod"]
) | st.text(max_size=70)
entry_paths = st.sampled_from(
    [
        "plugin.py",
        "../outside.py",
        "/etc/passwd",
        "C:\\x.py",
        "sub/../plugin.py",
        "sub/../../x.py",
        "a" * 300 + ".py",
        "plugin\x00.py",
        ".",
        "",
    ]
) | st.text(max_size=40)


def _opt(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A JSON object with any subset of `fields`, and maybe unknown keys."""
    return st.builds(
        lambda known, extra: {**extra, **known},
        st.fixed_dictionaries({}, optional=fields),
        st.dictionaries(st.text(max_size=8), json_values, max_size=2),
    )


settings_entries = _opt(
    instanceId=hostile_ids | json_values,
    pluginId=hostile_ids | json_values,
    enabled=st.booleans() | json_values,
    settings=st.dictionaries(st.text(max_size=8), json_values, max_size=3) | json_values,
)
settings_docs = _opt(
    plugins=st.lists(settings_entries | json_values, max_size=5) | json_values,
    pluginDirs=st.lists(st.text(max_size=10), max_size=3) | json_values,
    timeouts=st.dictionaries(
        st.sampled_from(["create", "load", "unload", "eventHandler", "other"]),
        st.floats() | st.integers() | json_values,
        max_size=4,
    )
    | json_values,
    secrets=json_values,
    agent=json_values,
)
descriptor_docs = _opt(
    id=hostile_ids | json_values,
    name=hostile_ids | json_values,
    description=st.text(max_size=10) | json_values,
    entry=entry_paths | json_values,
    version=st.text(max_size=5) | json_values,
    timeoutMs=st.integers() | json_values,
    allowedEnv=st.lists(st.text(max_size=5), max_size=2) | json_values,
    allowedModules=st.lists(st.text(max_size=5), max_size=2) | json_values | st.none(),
    allowedVaultPaths=json_values,
    cacheKeyPrefix=json_values,
)
# Well-typed descriptors whose id and entry are hostile: these reach the entry checks.
typed_descriptor_docs = _opt(
    id=hostile_ids,
    name=st.text(max_size=10),
    description=st.text(max_size=10),
    entry=entry_paths,
    timeoutMs=st.integers(min_value=1),
    allowedEnv=st.lists(st.text(max_size=5), max_size=2),
)
# Always-valid cores with hostile optional fields, so the fuzz reaches accepted descriptors too
# (the typed documents above are almost always refused since allowedEnv names are checked).
valid_descriptor_docs = st.fixed_dictionaries(
    {"id": st.sampled_from(["a", "good1", "GOOD-1"]), "entry": st.just("plugin.py")},
    optional={
        "name": st.text(max_size=10),
        "timeoutMs": st.integers(min_value=-5, max_value=10**12),
        "allowedEnv": st.lists(st.from_regex(r"[A-Z_][A-Z0-9_]{0,4}", fullmatch=True), max_size=2),
        "allowedVaultPaths": st.lists(st.text(max_size=6), max_size=2),
        "cacheKeyPrefix": st.text(max_size=6),
    },
)
secrets_docs = st.dictionaries(
    st.text(max_size=8),
    st.dictionaries(st.text(max_size=8), st.text(max_size=8) | json_values, max_size=3)
    | json_values,
    max_size=3,
)


def _encodings(doc: Any) -> st.SearchStrategy[bytes]:
    text = json.dumps(doc)
    return st.sampled_from([text.encode(), text.encode("utf-8-sig"), text.encode()[:-1]])


documents = st.one_of(json_values, settings_docs)


def _fuzz_parser(
    evidence: Evidence,
    check: Callable[[bytes], None],
    documents: st.SearchStrategy[Any],
    outcomes: dict[str, int],
    *,
    parser: str,
    inputs: str,
    held: str,
) -> None:
    """`check` EXAMPLES generated documents (in each encoding), then EXAMPLES strings of raw
    bytes; the parser must have both accepted and refused some, and the run is recorded."""
    for generated in (documents.flatmap(_encodings), st.binary(max_size=200)):
        FUZZ(given(generated)(check))()
    assert outcomes["accepted"] and outcomes["refused"]
    evidence.add(
        "fuzzing",
        f"{parser}: {2 * EXAMPLES} {inputs}",
        held,
        examples=2 * EXAMPLES,
        **{k.replace(" ", "_"): v for k, v in outcomes.items()},
    )


def test_settings_parser_only_raises_settings_error(tmp_path: Path, evidence: Evidence) -> None:
    path = tmp_path / ".scout" / "settings.json"
    outcomes = {"accepted": 0, "refused": 0, "entry problems": 0}

    def check(data: bytes) -> None:
        try:
            result = parse_settings(data, path=path, workspace=tmp_path)
        except SettingsError as exc:
            outcomes["refused"] += 1
            assert str(exc).startswith(str(path)) and exc.problems
            return
        assert isinstance(result, EngineSettings)
        outcomes["accepted"] += 1
        outcomes["entry problems"] += len(result.problems)
        assert all(str(p).startswith(str(path)) for p in result.problems)
        ids = [i.instance_id.lower() for i in result.instances]
        assert len(ids) == len(set(ids))  # ids unique ignoring case

    _fuzz_parser(
        evidence,
        check,
        documents,
        outcomes,
        parser="settings parser",
        inputs="generated inputs (random JSON, near-valid settings documents, truncated and "
        "BOM-prefixed encodings, raw bytes)",
        held="only SettingsError (naming the file) or a valid EngineSettings came out; "
        "instance ids always unique ignoring case",
    )


def test_descriptor_parser_only_raises_descriptor_error(tmp_path: Path, evidence: Evidence) -> None:
    folder = tmp_path / "plugin"
    (folder / "sub").mkdir(parents=True)
    (folder / "plugin.py").write_text("")
    (tmp_path / "outside.py").write_text("")
    path = folder / "plugin.json"
    outcomes = {"accepted": 0, "refused": 0}

    def check(data: bytes) -> None:
        path.write_bytes(data)
        try:
            descriptor = load_descriptor(path, source="pluginDir")
        except DescriptorError as exc:
            outcomes["refused"] += 1
            assert exc.problems and all(str(p).startswith(str(path)) for p in exc.problems)
            return
        outcomes["accepted"] += 1
        assert descriptor.entry_path.is_relative_to(folder.resolve())
        assert descriptor.entry_path.is_file() and descriptor.entry_path.suffix == ".py"

    documents = st.one_of(
        json_values, descriptor_docs, typed_descriptor_docs, valid_descriptor_docs
    )
    _fuzz_parser(
        evidence,
        check,
        documents,
        outcomes,
        parser="descriptor parser",
        inputs="generated plugin.json files (random JSON, near-valid descriptors with hostile "
        "ids and entries, raw bytes)",
        held="only DescriptorError (naming the file) or a descriptor whose entry is a .py "
        "file inside its folder",
    )


def test_secrets_store_only_raises_secrets_error(tmp_path: Path, evidence: Evidence) -> None:
    path = tmp_path / "secrets.json"
    store = FileSecretsStore(path)
    outcomes = {"read": 0, "refused": 0}

    def check(data: bytes) -> None:
        path.write_bytes(data)
        os.chmod(path, 0o600)
        try:
            value = store.get("a", "k")
            keys = store.keys("a")
        except SecretsError as exc:
            outcomes["refused"] += 1
            assert str(exc).startswith(str(path))
            return
        outcomes["read"] += 1
        assert value is None or isinstance(value, str)
        assert all(isinstance(k, str) for k in keys)

    @FUZZ
    @given(st.one_of(json_values, secrets_docs).flatmap(_encodings) | st.binary(max_size=100))
    def fuzz(data: bytes) -> None:
        check(data)

    fuzz()
    assert outcomes["read"] and outcomes["refused"]
    evidence.add(
        "fuzzing",
        f"secrets store: {EXAMPLES} generated secrets.json files (random JSON, near-valid "
        "stores, raw bytes)",
        "only SecretsError (naming the file) or string values came out",
        examples=EXAMPLES,
        **outcomes,
    )
