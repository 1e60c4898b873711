"""The package as users get it: the public API, the wheel's contents, a fast `--help`."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tomllib
import types
import zipfile
from pathlib import Path

import pytest

import grambot
from tests.helpers import Dists

REPO = Path(__file__).resolve().parent.parent


def test_all_matches_the_public_names() -> None:
    public = {
        name
        for name in dir(grambot)
        if not name.startswith("_")
        and name != "annotations"  # from __future__
        and not isinstance(getattr(grambot, name), types.ModuleType)  # imported submodules
    }
    assert set(grambot.__all__) == public
    for name in grambot.__all__:
        assert getattr(grambot, name) is not None


def test_engine_side_errors_left_the_public_face_with_a_warning() -> None:
    from grambot.errors import PluginLoadError

    assert "PluginLoadError" not in grambot.__all__
    with pytest.warns(DeprecationWarning, match="grambot.errors"):
        assert grambot.PluginLoadError is PluginLoadError
    with pytest.raises(AttributeError):
        _ = grambot.NoSuchName


@pytest.mark.parametrize(
    ("old", "new", "name"),
    [
        ("grambot.plugins.definition", "grambot.contract.definition", "Plugin"),
        ("grambot.plugins.api", "grambot.contract.api", "PluginApi"),
        ("grambot.plugins.events", "grambot.events.event", "PluginEvent"),
    ],
)
def test_moved_plugin_modules_keep_their_old_names_for_one_release(
    old: str, new: str, name: str
) -> None:
    """A plugin written against 0.1 imported these modules; each old name is the new module
    itself (the same classes), with a DeprecationWarning. Run in a fresh interpreter: the alias
    warns once, at its first import."""
    code = (
        "import importlib, warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        f"    old = importlib.import_module({old!r})\n"
        f"assert old is importlib.import_module({new!r}), old\n"
        f"assert getattr(old, {name!r}) is getattr(importlib.import_module('grambot'), {name!r})\n"
        "assert [w.category for w in caught] == [DeprecationWarning], caught\n"
        f"assert {new!r} in str(caught[0].message)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_help_imports_no_heavy_module() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from grambot.cli import main\n"
        "result = CliRunner().invoke(main, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = ('pydantic', 'anthropic', 'openai', 'telegram', 'httpx')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_wheel_carries_the_builtin_plugins(grambot_dists: Dists) -> None:
    names = set(zipfile.ZipFile(grambot_dists.wheel).namelist())
    builtins = [p for p in (REPO / "builtin_plugins").glob("*/plugin.json")]
    for descriptor in builtins:
        folder = descriptor.parent.name
        assert f"grambot/_builtin_plugins/{folder}/plugin.json" in names
    assert "grambot/core/manager.py" in names
    assert not any(n.startswith("builtin_plugins/") for n in names)


# -- packaging ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel_metadata(grambot_dists: Dists) -> tuple[set[str], str]:
    with zipfile.ZipFile(grambot_dists.wheel) as archive:
        names = set(archive.namelist())
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        return names, archive.read(meta).decode()


def test_the_wheel_says_its_license_and_carries_it(wheel_metadata: tuple[set[str], str]) -> None:
    names, metadata = wheel_metadata
    assert "License-Expression: MIT" in metadata.splitlines()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert (REPO / "LICENSE").read_text().startswith("MIT License")


def test_the_wheel_is_typed_and_described(wheel_metadata: tuple[set[str], str]) -> None:
    names, metadata = wheel_metadata
    assert "grambot/py.typed" in names
    assert "grambot/_testing/fake_chat/plugin.json" in names  # grambot.testing's fake chat
    lines = metadata.splitlines()
    for classifier in (
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Typing :: Typed",
    ):
        assert f"Classifier: {classifier}" in lines
    assert any(line.startswith("Project-URL: Documentation, ") for line in lines)
    assert any(line.startswith("Project-URL: Repository, ") for line in lines)


def test_the_version_is_written_in_one_place(wheel_metadata: tuple[set[str], str]) -> None:
    _, metadata = wheel_metadata
    assert f"Version: {grambot.__version__}" in metadata.splitlines()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]


def test_the_core_install_requires_no_chat_or_model_sdk(
    wheel_metadata: tuple[set[str], str],
) -> None:
    _, metadata = wheel_metadata
    core = [
        line.removeprefix("Requires-Dist: ")
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist: ") and "extra ==" not in line
    ]
    sdks = ("python-telegram-bot", "anthropic", "openai", "keyring")
    assert not [r for r in core if r.startswith(sdks)], core
    extras = {
        line.split(": ", 1)[1]
        for line in metadata.splitlines()
        if line.startswith("Provides-Extra")
    }
    assert {"telegram", "anthropic", "openai", "keyring", "all", "dev"} <= extras


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_sdist_holds_the_tests_and_they_run(grambot_dists: Dists, tmp_path: Path) -> None:
    with tarfile.open(grambot_dists.sdist) as archive:
        archive.extractall(tmp_path / "x", filter="data")
    (root,) = (tmp_path / "x").iterdir()
    tracked = subprocess.run(
        [
            "git",
            "-C",
            str(REPO),
            "ls-files",
            "tests",
            "builtin_plugins",
            "grambot",
            "docs",
            "bench",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if tracked.returncode == 0:  # (an sdist's own tests have no git to compare with)
        missing = [n for n in tracked.stdout.split() if not (root / n).exists()]
        assert not missing, missing
    assert not list(root.rglob("secrets.json")) and not list(root.rglob("*.db"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_plan.py",
            "tests/test_catalog.py",
            "tests/test_init.py",
            "tests/test_plugin_packages.py",
            "tests/builtin/test_missing_sdk.py",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout
