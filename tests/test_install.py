"""Install anywhere: the wheel in clean virtual environments, from a
new folder to a bot that answers; the extras; a scaffolded plugin package. Real pip installs
(dependencies from the package index), so these are slow: run with --slow."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import Dists

REPO = Path(__file__).resolve().parent.parent
SDKS = ("anthropic", "openai", "telegram", "keyring")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _run(*argv: str | Path, cwd: Path | None = None, timeout: float = 600) -> str:
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{argv}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(grambot_dists: Dists) -> Path:
    return grambot_dists.wheel


def _venv(path: Path) -> Path:
    _run(sys.executable, "-m", "venv", path)
    return path / "bin"


def _sdks(bin_dir: Path) -> dict[str, bool]:
    code = (
        "import importlib.util, json\n"
        f"print(json.dumps({{m: importlib.util.find_spec(m) is not None for m in {SDKS!r}}}))"
    )

    found: dict[str, bool] = json.loads(_run(bin_dir / "python", "-c", code))
    return found


@pytest.fixture(scope="module")
def core(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean venv with the core wheel (no extra) installed: its bin folder."""
    bin_dir = _venv(tmp_path_factory.mktemp("core") / "venv")
    _run(bin_dir / "python", "-m", "pip", "install", "-q", wheel)
    return bin_dir


def test_the_core_wheel_brings_no_sdk_and_a_new_folder_answers(core: Path, tmp_path: Path) -> None:
    assert _sdks(core) == dict.fromkeys(SDKS, False)
    folder = tmp_path / "my bot"
    out = _run(core / "grambot", "init", folder)
    assert "grambot run" in out
    _run(core / "grambot", "validate", cwd=folder)
    # printf 'hi\n' | grambot run: an answer, then exit 0 at EOF (the console is the only
    # connector)
    done = subprocess.run(
        ["sh", "-c", f"printf 'hi\\n' | {shlex.quote(str(core / 'grambot'))} run"],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        timeout=120,
    )
    assert done.returncode == 0, done.stdout
    assert "bot> hi" in done.stdout and "Traceback" not in done.stdout, done.stdout


def test_a_builtin_without_its_extra_says_which_to_install(core: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bot"
    _run(core / "grambot", "init", folder)
    listing = _run(core / "grambot", "plugins", cwd=folder)
    assert "pip install 'grambot[anthropic]'" in listing
    _run(core / "grambot", "enable", "anthropic", cwd=folder)
    subprocess.run(
        [core / "grambot", "secrets", "set", "anthropic", "apiKey"],
        cwd=folder,
        input="k",
        text=True,
        check=True,
        capture_output=True,
        timeout=60,
    )
    check = subprocess.run(
        [core / "grambot", "check", "anthropic"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 1
    assert "missing-dependency" in check.stdout + check.stderr
    assert "pip install 'grambot[anthropic]'" in check.stdout + check.stderr


def test_a_scaffolded_plugin_package_installs_is_discovered_loads_and_passes(
    core: Path, tmp_path: Path
) -> None:
    _run(core / "grambot", "new", "weather", "--package", "--kind", "tool", cwd=tmp_path)
    project = tmp_path / "grambot-weather"
    _run(core / "python", "-m", "pip", "install", "-q", project, "pytest")
    folder = tmp_path / "bot"
    _run(core / "grambot", "init", folder)
    listing = _run(core / "grambot", "plugins", cwd=folder)
    assert "weather 0.1.0  Weather  (entry-point:" in listing
    _run(core / "grambot", "enable", "weather", cwd=folder)
    _run(core / "grambot", "check", "weather", cwd=folder)  # loads it, apart from any engine
    out = _run(core / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", project / "tests")
    assert "2 passed" in out  # loads and works; the bot calls it (fake_chat)
    site = _run(core / "python", "-c", "import grambot_weather; print(grambot_weather.__file__)")
    assert "site-packages" in site  # the installed copy was tested, not the source folder
    # installed in editable mode instead: found in its source folder, which --reload-plugins
    # follows (the project folder its direct_url.json names)
    _run(core / "python", "-m", "pip", "install", "-q", "-e", project)
    listing = _run(core / "grambot", "plugins", "--json", cwd=folder)
    (weather,) = [p for p in json.loads(listing)["plugins"] if p["id"] == "weather"]
    assert Path(weather["folder"]) == project / "src" / "grambot_weather"
    code = (
        "import importlib.metadata as m\n"
        "from grambot.config.packages import editable_source\n"
        "print(editable_source(m.distribution('grambot-weather')))"
    )
    assert Path(_run(core / "python", "-c", code).strip()) == project
    out = _run(core / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", project / "tests")
    assert "2 passed" in out  # loads and works; the bot calls it (fake_chat)


def test_the_all_extra_brings_every_builtin_sdk(wheel: Path, tmp_path: Path) -> None:
    bin_dir = _venv(tmp_path / "venv")
    _run(bin_dir / "python", "-m", "pip", "install", "-q", f"{wheel}[all]")
    assert _sdks(bin_dir) == dict.fromkeys(SDKS, True)
    started = time.monotonic()
    code = "import anthropic, openai, telegram, telegram.ext, keyring"
    _run(bin_dir / "python", "-c", code)
    assert time.monotonic() - started < 60
