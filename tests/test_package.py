"""The package as users get it: the public API, the wheel's contents, a fast `--help`."""

from __future__ import annotations

import subprocess
import sys
import types
import zipfile
from pathlib import Path

import grambot

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


def test_wheel_carries_the_builtin_plugins(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("grambot-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    builtins = [p for p in (REPO / "builtin_plugins").glob("*/plugin.json")]
    for descriptor in builtins:
        folder = descriptor.parent.name
        assert f"grambot/_builtin_plugins/{folder}/plugin.json" in names
    assert "grambot/core/manager.py" in names
    assert not any(n.startswith("builtin_plugins/") for n in names)
