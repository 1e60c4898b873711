"""Evidence for docs/reliability.md, written by the reliability tests themselves.

Each test that proves something adds rows through the `evidence` fixture (see conftest.py):
what was tried, what held and the figures measured. When `GRAMBOT_RELIABILITY_OUT` names a file,
the rows are appended to it as JSON lines, together with the test's outcome and duration, and
`tests/reliability/report.py` renders them as the table of docs/reliability.md. A row is only
ever claimed as "held" by a test that passed: a failing test's rows carry outcome "failed".
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_OUT = "GRAMBOT_RELIABILITY_OUT"
ENV_SLOW = "GRAMBOT_SLOW"


def slow_mode() -> bool:
    """True under `pytest --slow` (or GRAMBOT_SLOW=1): size tests for depth, not CI time."""
    return os.environ.get(ENV_SLOW) == "1"


@dataclass
class Evidence:
    test: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def add(self, area: str, tried: str, held: str, **figures: Any) -> None:
        self.rows.append({"area": area, "tried": tried, "held": held, "figures": figures})

    def flush(self, outcome: str) -> None:
        out = os.environ.get(ENV_OUT)
        if not out or not self.rows:
            return
        seconds = round(time.perf_counter() - self.started, 3)
        with Path(out).open("a", encoding="utf-8") as fh:
            for row in self.rows:
                record = {
                    **row,
                    "test": self.test,
                    "outcome": outcome,
                    "seconds": seconds,
                    "slow": slow_mode(),
                    "python": platform.python_version(),
                    "platform": sys.platform,
                    "cpus": os.cpu_count(),
                }
                fh.write(json.dumps(record, sort_keys=True) + "\n")
