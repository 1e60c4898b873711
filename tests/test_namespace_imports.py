"""Imports inside a namespace go through the namespace itself: every shape of relative import
still behaves as Python's."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from grambot.containment.loader import NAMESPACE_ROOT, PluginNamespace


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def namespace(tmp_path: Path):  # type: ignore[no-untyped-def]
    created: list[PluginNamespace] = []

    def make(files: dict[str, str]) -> tuple[PluginNamespace, object]:
        _write(tmp_path, files)
        ns = PluginNamespace("imports", tmp_path)
        created.append(ns)
        return ns, ns.import_entry(tmp_path / "plugin.py")

    yield make
    for ns in created:
        ns.unload()
    assert not [n for n in sys.modules if n.startswith(f"{NAMESPACE_ROOT}.imports__")]


def test_relative_import_shapes(namespace) -> None:  # type: ignore[no-untyped-def]
    ns, module = namespace(
        {
            "plugin.py": (
                "from . import helper\n"
                "from .sub import mod\n"
                "from .sub.mod import VALUE\n"
                "from .sub import mod as again\n"
                "from . import sub\n"
                "import importlib\n"
                "def late():\n"
                "    return importlib.import_module('.late', __package__).LATE\n"
            ),
            "helper.py": "NAME = 'helper'\n",
            "sub/__init__.py": "",
            "sub/mod.py": "from ..helper import NAME\nVALUE = NAME + '!'\n",
            "late.py": "LATE = 'late'\n",
        }
    )
    assert module.helper.NAME == "helper"  # type: ignore[attr-defined]
    assert module.VALUE == "helper!"  # type: ignore[attr-defined]
    assert module.mod is module.again is module.sub.mod  # type: ignore[attr-defined]
    assert module.mod.__name__ == f"{ns.name}.sub.mod"  # type: ignore[attr-defined]
    assert module.late() == "late"  # type: ignore[attr-defined]
    assert sys.modules[f"{ns.name}.late"].LATE == "late"


def test_circular_imports_see_the_partial_module(namespace) -> None:  # type: ignore[no-untyped-def]
    _, module = namespace(
        {
            "plugin.py": "from . import a\nRESULT = a.describe()\n",
            "a.py": "from . import b\nA = 'a'\ndef describe():\n    return b.B + A\n",
            "b.py": "from . import a\nB = 'b'\n",
        }
    )
    assert module.RESULT == "ba"  # type: ignore[attr-defined]


def test_a_failed_module_is_forgotten_and_can_be_retried(  # type: ignore[no-untyped-def]
    namespace, tmp_path: Path
) -> None:
    ns, module = namespace(
        {
            "plugin.py": "def get():\n    from .flaky import X\n    return X\n",
            "flaky.py": "raise RuntimeError('not yet')\n",
        }
    )
    with pytest.raises(RuntimeError, match="not yet"):
        module.get()  # type: ignore[attr-defined]
    assert f"{ns.name}.flaky" not in sys.modules
    (tmp_path / "flaky.py").write_text("X = 1\n")
    assert module.get() == 1  # type: ignore[attr-defined]


def test_missing_names_and_modules_raise_import_errors(namespace) -> None:  # type: ignore[no-untyped-def]
    _, module = namespace(
        {
            "plugin.py": (
                "def missing_module():\n    from .nowhere import X\n"
                "def missing_name():\n    from . import nothing_here\n"
                "def too_far():\n    from ... import x\n"
            ),
        }
    )
    with pytest.raises(ModuleNotFoundError):
        module.missing_module()  # type: ignore[attr-defined]
    with pytest.raises(ImportError, match="nothing_here"):
        module.missing_name()  # type: ignore[attr-defined]
    with pytest.raises(ImportError):
        module.too_far()  # type: ignore[attr-defined]


def test_importlib_path_still_works(namespace) -> None:  # type: ignore[no-untyped-def]
    ns, _ = namespace({"plugin.py": "", "extra.py": "E = 5\n"})
    assert importlib.import_module(f"{ns.name}.extra").E == 5


def test_two_threads_importing_one_module_run_it_once(namespace) -> None:  # type: ignore[no-untyped-def]
    import threading

    _, module = namespace(
        {
            "plugin.py": "def get():\n    from .slow import X\n    return X\n",
            "counter.py": "N = []\n",
            "slow.py": "import time\nfrom . import counter\ncounter.N.append(1)\ntime.sleep(0.2)\n"
            "X = len(counter.N)\n",
        }
    )
    got: list[int] = []
    threads = [threading.Thread(target=lambda: got.append(module.get())) for _ in range(2)]  # type: ignore[attr-defined]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == [1, 1]
