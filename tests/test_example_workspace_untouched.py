"""The tests keep off the repository's example workspace (tests/isolation.py, conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import isolation
from tests.isolation import EXAMPLE_SCOUT, REPO


def test_the_current_folder_is_outside_the_repository() -> None:
    cwd = Path.cwd().resolve()
    assert cwd != REPO and REPO not in cwd.parents


def test_using_the_example_workspace_is_refused_and_reported() -> None:
    with pytest.raises(PermissionError):
        (EXAMPLE_SCOUT / "settings.json").read_bytes()
    with pytest.raises(PermissionError):
        os.listdir(EXAMPLE_SCOUT)
    with pytest.raises(PermissionError):
        subprocess.run([sys.executable, "-m", "grambot", "status", "--workspace", str(REPO)])
    # Reported for the autouse check (which would fail this test): taken here instead.
    touched = isolation.take_touched()
    assert len(touched) == 3, touched
    assert all(str(EXAMPLE_SCOUT) in t or str(REPO) in t for t in touched), touched


def test_a_workspace_of_its_own_is_not_refused(tmp_path: Path) -> None:
    scout = tmp_path / ".scout"
    scout.mkdir()
    (scout / "settings.json").write_text('{"plugins": []}')
    assert os.listdir(scout) == ["settings.json"]
    assert isolation.take_touched() == []
