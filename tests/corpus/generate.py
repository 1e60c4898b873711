"""Writes the hostile-input corpus beside this script (run it to regenerate; the output is
committed so that every input can be read and replayed on its own).

    python tests/corpus/generate.py

settings/<case>.json    settings files; settings/cases.json says what each must produce
descriptors/<case>/     plugin folders with a hostile plugin.json; descriptors/cases.json
secrets/<case>.json     secrets stores; secrets/cases.json

A case's expectation: `level` "file" (the whole file is refused: SettingsError /
DescriptorError / SecretsError) or "entry" (settings only: the bad entries are reported, the
good ones apply); `contains`: texts the error must contain; `json_path`: where it must point.
Inputs too big for git (the 5 MB settings file) and symlinks are made by the tests themselves.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GOOD = [
    {"instanceId": "good1", "pluginId": "probe", "settings": {"tool_name": "good1-tool"}},
    {"instanceId": "good2", "pluginId": "probe", "settings": {"tool_name": "good2-tool"}},
]


def settings_doc(*bad: Any, before: bool = False, **keys: Any) -> str:
    plugins = [*bad, *GOOD] if before else [*GOOD, *bad]
    return json.dumps({**keys, "plugins": plugins}, indent=1, ensure_ascii=False)


def bad_id(instance_id: Any) -> dict[str, Any]:
    return {"instanceId": instance_id, "pluginId": "probe", "settings": {"tool_name": "evil"}}


def bad_id_case(instance_id: Any, *words: str) -> tuple[str, dict[str, Any]]:
    """A settings file whose third entry has a bad `instance_id`: reported there, with `words`."""
    expected = {
        "level": "entry",
        "contains": ["instanceId must match", *words],
        "json_path": "plugins[2].instanceId",
    }
    return settings_doc(bad_id(instance_id)), expected


SETTINGS: dict[str, tuple[bytes | str, dict[str, Any]]] = {
    # -- the whole file is refused -----------------------------------------------------------
    "truncated": (settings_doc()[:60], {"level": "file", "contains": ["invalid JSON at line"]}),
    "empty": ("", {"level": "file", "contains": ["file is empty"]}),
    "whitespace-only": (" \n\t\r\n", {"level": "file", "contains": ["file is empty"]}),
    "top-level-list": ("[]", {"level": "file", "contains": ["top level must be a JSON object"]}),
    "top-level-string": ('"plugins"', {"level": "file", "contains": ["top level must be"]}),
    "top-level-null": ("null", {"level": "file", "contains": ["top level must be"]}),
    "plugins-object": (
        '{"plugins": {"good1": {"pluginId": "probe"}}}',
        {"level": "file", "contains": ["plugins must be a list"], "json_path": "plugins"},
    ),
    "plugin-dirs-string": (
        settings_doc(pluginDirs="plugins"),
        {"level": "file", "contains": ["pluginDirs must be a list"], "json_path": "pluginDirs"},
    ),
    "plugin-dirs-empty-string": (
        settings_doc(pluginDirs=[""]),
        {"level": "file", "contains": ["must not be empty"], "json_path": "pluginDirs[0]"},
    ),
    "timeouts-negative": (
        settings_doc(timeouts={"create": -1}),
        {"level": "file", "contains": ["greater than 0"], "json_path": "timeouts.create"},
    ),
    "timeouts-zero": (
        settings_doc(timeouts={"unload": 0}),
        {"level": "file", "contains": ["greater than 0"], "json_path": "timeouts.unload"},
    ),
    "timeouts-string": (
        settings_doc(timeouts={"load": "30"}),
        {"level": "file", "contains": ["must be a number"], "json_path": "timeouts.load"},
    ),
    "timeouts-nan": (
        '{"timeouts": {"load": NaN}, "plugins": []}',
        {"level": "file", "contains": ["finite number"], "json_path": "timeouts.load"},
    ),
    "timeouts-infinity": (
        '{"timeouts": {"eventHandler": 1e999}, "plugins": []}',
        {"level": "file", "contains": ["finite number"], "json_path": "timeouts.eventHandler"},
    ),
    "timeouts-bool": (
        settings_doc(timeouts={"create": True}),
        {"level": "file", "contains": ["timeouts.create"]},
    ),
    "integer-5000-digits": (
        '{"plugins": [], "x": ' + "9" * 5000 + "}",
        {"level": "file", "contains": ["invalid JSON"]},
    ),
    "non-utf8-bytes": (
        b'{"plugins": [{"instanceId": "g\xff\xfe", "pluginId": "probe"}]}',
        {"level": "file", "contains": ["not valid UTF-8", "offset 30"]},
    ),
    "utf16-with-bom": (
        settings_doc().encode("utf-16"),
        {"level": "file", "contains": ["not valid UTF-8"]},
    ),
    "latin1": (
        settings_doc(bad_id("caf\u00e9")).encode("latin-1"),
        {"level": "file", "contains": ["not valid UTF-8"]},
    ),
    "nul-after-json": (
        settings_doc() + "\x00",
        {"level": "file", "contains": ["invalid JSON"]},
    ),
    "two-documents": (settings_doc() + settings_doc(), {"level": "file", "contains": ["Extra data"]}),
    "nested-5000-arrays": (
        "[" * 5_000 + "]" * 5_000,
        {"level": "file", "contains": ["nested deeper than 100 levels"]},
    ),
    "nested-150-in-settings": (
        settings_doc({"instanceId": "deep", "pluginId": "probe", "settings": {"x": json.loads("[" * 150 + "]" * 150)}}),
        {"level": "file", "contains": ["nested deeper than 100 levels"]},
    ),
    "nested-150-objects": (
        '{"plugins": [], "agent": ' + '{"a": ' * 150 + "1" + "}" * 150 + "}",
        {"level": "file", "contains": ["nested deeper than 100 levels"]},
    ),
    # -- bad entries are reported; good entries (and held instances) are unaffected ---------
    "id-dot-dot-slash": bad_id_case("../evil"),
    "id-slash": bad_id_case("a/b", "'a/b'"),
    "id-absolute-path": bad_id_case("/etc/passwd"),
    "id-backslash": bad_id_case("..\\..\\evil"),
    "id-nul": bad_id_case("good1\u0000evil", "\\x00"),
    "id-trailing-newline": bad_id_case("good3\n"),
    "id-cyrillic-homoglyph": bad_id_case("g\u043e\u043ed1"),
    "id-fullwidth": bad_id_case("\uff47\uff4f\uff4f\uff44\uff11"),
    "id-right-to-left-override": bad_id_case("\u202egood1"),
    "id-zero-width-space": bad_id_case("good\u200b1"),
    "id-combining-mark": bad_id_case("good\u03011"),
    "id-lone-surrogate": (
        settings_doc().replace('"plugins": [', '"plugins": [{"instanceId": "\\ud800", "pluginId": "probe"}, ', 1),
        {"level": "entry", "contains": ["instanceId must match"], "json_path": "plugins[0].instanceId"},
    ),
    "id-65-chars": (
        settings_doc(bad_id("a" * 65)),
        {"level": "entry", "contains": ["at most 64"], "json_path": "plugins[2].instanceId"},
    ),
    "id-empty": bad_id_case(""),
    "id-number": (
        settings_doc(bad_id(7)),
        {"level": "entry", "contains": ["instanceId must be a string"], "json_path": "plugins[2].instanceId"},
    ),
    "id-missing": (
        settings_doc({"pluginId": "probe"}),
        {"level": "entry", "contains": ["instanceId is required"], "json_path": "plugins[2].instanceId"},
    ),
    "id-duplicate-other-case": (
        settings_doc(bad_id("GOOD1")),
        {"level": "entry", "contains": ["duplicate instanceId 'GOOD1'", "plugins[0]"], "json_path": "plugins[2].instanceId"},
    ),
    "id-duplicate-exact": (
        settings_doc({"instanceId": "good2", "pluginId": "probe", "settings": {"tool_name": "evil"}}),
        {"level": "entry", "contains": ["duplicate instanceId 'good2'"], "json_path": "plugins[2].instanceId"},
    ),
    "plugin-id-traversal": (
        settings_doc({"instanceId": "evil", "pluginId": "../../etc"}),
        {"level": "entry", "contains": ["pluginId must match"], "json_path": "plugins[2].pluginId", "held": ["evil"]},
    ),
    "enabled-string": (
        settings_doc({"instanceId": "evil", "pluginId": "probe", "enabled": "false"}),
        {"level": "entry", "contains": ["enabled must be true or false"], "json_path": "plugins[2].enabled", "held": ["evil"]},
    ),
    "settings-list": (
        settings_doc({"instanceId": "evil", "pluginId": "probe", "settings": ["tool_name", "x"]}),
        {"level": "entry", "contains": ["settings must be an object"], "json_path": "plugins[2].settings", "held": ["evil"]},
    ),
    "entry-not-object": (
        settings_doc(42, before=True),
        {"level": "entry", "contains": ["must be an object"], "json_path": "plugins[0]"},
    ),
    "entry-null": (
        settings_doc(None),
        {"level": "entry", "contains": ["must be an object"], "json_path": "plugins[2]"},
    ),
    # A good instance's own entry turns bad: it is held, i.e. keeps running as it was.
    "good-entry-turns-bad": (
        json.dumps({"plugins": [{**GOOD[0], "enabled": "yes"}, GOOD[1]]}),
        {"level": "entry", "contains": ["enabled must be true or false"], "json_path": "plugins[0].enabled", "held": ["good1"]},
    ),
}

OUTSIDE = "outside.py"  # descriptors/outside.py: a file next to the plugin folders


def descriptor(**keys: Any) -> str:
    return json.dumps({"id": "hostile", "name": "Hostile", "description": "", "entry": "plugin.py", **keys})


DESCRIPTORS: dict[str, tuple[bytes | str, dict[str, Any]]] = {
    "entry-dot-dot": (descriptor(entry="../outside.py"), {"contains": ["outside the plugin folder"], "json_path": "entry"}),
    "entry-dot-dot-inside-first": (
        descriptor(entry="sub/../../outside.py"),
        {"contains": ["outside the plugin folder"], "json_path": "entry"},
    ),
    "entry-absolute": (descriptor(entry="/etc/hostname.py"), {"contains": ["must be relative"], "json_path": "entry"}),
    "entry-windows-absolute": (descriptor(entry="C:\\evil\\plugin.py"), {"contains": ["must be relative"], "json_path": "entry"}),
    "entry-missing-file": (descriptor(entry="nothere.py"), {"contains": ["does not exist"], "json_path": "entry"}),
    "entry-not-python": (descriptor(entry="plugin.txt"), {"contains": ["must name a .py file"], "json_path": "entry"}),
    "entry-nul": (descriptor(entry="plugin\u0000.py"), {"contains": ["cannot be resolved"], "json_path": "entry"}),
    "entry-name-too-long": (descriptor(entry="a" * 300 + ".py"), {"contains": ["cannot be read: File name too long"], "json_path": "entry"}),
    "entry-wrong-type": (descriptor(entry=123), {"contains": ["valid string"], "json_path": "entry"}),
    "entry-list": (descriptor(entry=["plugin.py"]), {"contains": ["valid string"], "json_path": "entry"}),
    "entry-empty": (descriptor(entry=""), {"contains": ["at least 1 character"], "json_path": "entry"}),
    "entry-missing-key": (json.dumps({"id": "hostile"}), {"contains": ["Field required"], "json_path": "entry"}),
    "id-wrong-type": (descriptor(id=5), {"contains": ["valid string"], "json_path": "id"}),
    "id-traversal": (descriptor(id="../x"), {"contains": ["must match"], "json_path": "id"}),
    "id-cyrillic-homoglyph": (descriptor(id="pr\u043ebe"), {"contains": ["must match"], "json_path": "id"}),
    "id-trailing-newline": (descriptor(id="probe\n"), {"contains": ["must match"], "json_path": "id"}),
    "timeout-ms-string": (descriptor(timeoutMs="100"), {"contains": ["valid integer"], "json_path": "timeoutMs"}),
    "timeout-ms-negative": (descriptor(timeoutMs=-5), {"contains": ["greater than 0"], "json_path": "timeoutMs"}),
    "allowed-env-string": (descriptor(allowedEnv="HOME"), {"contains": ["valid list"], "json_path": "allowedEnv"}),
    "not-an-object": ("[]", {"contains": ["must be a JSON object"]}),
    "truncated": (descriptor()[:20], {"contains": ["is not valid JSON"]}),
    "empty": ("", {"contains": ["is not valid JSON"]}),
    "non-utf8": (b'{"id": "hostile", "entry": "plugin.py", "name": "\xff"}', {"contains": ["is not UTF-8"]}),
    "nested-5000": (
        '{"id": "hostile", "entry": "plugin.py", "x": ' + "[" * 5_000 + "]" * 5_000 + "}",
        {"contains": ["is nested deeper than 100 levels"]},
    ),
    "nested-900": (
        '{"id": "hostile", "entry": "plugin.py", "x": ' + "[" * 900 + "]" * 900 + "}",
        {"contains": ["is nested deeper than 100 levels"]},
    ),
    "integer-5000-digits": (
        '{"id": "hostile", "entry": "plugin.py", "timeoutMs": ' + "9" * 5000 + "}",
        {"contains": ["is not valid JSON"]},
    ),
}

SECRETS: dict[str, tuple[bytes | str, dict[str, Any]]] = {
    "truncated": ('{"holder": {"token": "abc', {"contains": ["not valid JSON"]}),
    "non-utf8": (b'{"holder": {"token": "\xff\xfe"}}', {"contains": ["not valid UTF-8 JSON"]}),
    "top-level-list": ('[["holder", "token"]]', {"contains": ["expected an object of instance ids"]}),
    "value-not-string": ('{"holder": {"token": 12345}}', {"contains": ["holder: expected an object of string values"]}),
    "entries-not-object": ('{"holder": "token"}', {"contains": ["holder: expected an object of string values"]}),
    "nested-5000": (
        '{"holder": ' + "[" * 5_000 + "]" * 5_000 + "}",
        {"contains": ["holder: expected an object of string values (got JSON nested deeper than 100 levels)"]},
    ),
    "nested-5000-top-level": (
        "[" * 5_000 + "]" * 5_000,
        {"contains": ["expected an object of instance ids at the top level (got JSON nested deeper than 100 levels)"]},
    ),
    "integer-5000-digits": ('{"holder": {"token": ' + "9" * 5000 + "}}", {"contains": ["not valid UTF-8 JSON"]}),
    "nul-bytes": ('{"holder": {"token": "x"}}\x00\x00', {"contains": ["not valid JSON"]}),
}


def write(path: Path, content: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))


def main() -> None:
    for sub in ("settings", "descriptors", "secrets"):
        shutil.rmtree(HERE / sub, ignore_errors=True)
    for name, (content, expect) in SETTINGS.items():
        write(HERE / "settings" / f"{name}.json", content)
    (HERE / "settings" / "cases.json").write_text(json.dumps({k: v for k, (_, v) in SETTINGS.items()}, indent=1) + "\n")
    write(HERE / "descriptors" / OUTSIDE, "plugin = None  # outside every plugin folder\n")
    for name, (content, expect) in DESCRIPTORS.items():
        folder = HERE / "descriptors" / name
        write(folder / "plugin.json", content)
        write(folder / "plugin.py", "raise RuntimeError('a hostile plugin must never be imported')\n")
        write(folder / "plugin.txt", "not python\n")
    (HERE / "descriptors" / "cases.json").write_text(json.dumps({k: v for k, (_, v) in DESCRIPTORS.items()}, indent=1) + "\n")
    for name, (content, expect) in SECRETS.items():
        write(HERE / "secrets" / f"{name}.json", content)
    (HERE / "secrets" / "cases.json").write_text(json.dumps({k: v for k, (_, v) in SECRETS.items()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
