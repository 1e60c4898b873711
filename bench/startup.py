"""4. Start-up: CLI commands against the bare interpreter, run-to-ready against the SDK imports.

Every figure is the median wall time of whole processes, grambot and baseline alternated.

Run-to-ready starts a real `grambot run` with the real telegram and anthropic built-ins enabled,
pointed at local fakes of their APIs that this benchmark serves on 127.0.0.1 (the fakes of the
test suite, `tests/fakes`): the telegram instance calls getMe and deleteWebhook on the fake during
its load() and starts polling it; the anthropic instance builds its client with a fake key and
base URL and calls nothing. "Ready" is the engine's `grambot ready ...: 2 instance(s) loaded
(tg, claude)` log line, read from the process's output as it is written.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    PYTHON,
    Result,
    alternate,
    child_env,
    median,
    ratio,
    time_process,
)

GROUP = "startup"
GRAMBOT = [PYTHON, "-m", "grambot"]
CLI_SLACK_MS = 150.0
READY = re.compile(r"grambot ready in .*: (\d+) instance\(s\) loaded(?: \(([^)]*)\))?")
LOADED = re.compile(r"instance (\S+) \(plugin \S+\) loaded")
INSTANCES = {"tg", "claude"}
TOKEN = "4242:bench-token"
API_KEY = "bench-anthropic-key"


def _grambot_argv() -> list[str]:
    script = Path(PYTHON).with_name("grambot")
    return [str(script)] if script.exists() else GRAMBOT


def _cli(
    name: str, argv: list[str], rounds: int, env: dict[str, str], ok_codes: tuple[int, ...] = (0,)
) -> Result:
    bare = [PYTHON, "-c", "pass"]
    gb, base = alternate(
        lambda: time_process(argv, env=env, ok_codes=ok_codes),
        lambda: time_process(bare, env=env),
        rounds,
    )
    value, baseline = median(gb) * 1000, median(base) * 1000
    return Result(
        name=f"`{name}` (vs `python -c pass`)",
        value=round(value, 1),
        baseline=round(baseline, 1),
        ratio=ratio(value, baseline),
        target=f"value - baseline <= {CLI_SLACK_MS:g} ms",
        unit="ms",
        meets=value - baseline <= CLI_SLACK_MS,
        notes=f"median of {rounds} alternated runs each",
        group=GROUP,
    )


@dataclass
class Fakes:
    telegram: Any  # tests.fakes.telegram_api.FakeTelegram
    anthropic: Any  # tests.fakes.anthropic_api.FakeAnthropic


@contextmanager
def _fakes() -> Iterator[Fakes]:
    """The test suite's fake Telegram Bot API and Anthropic API, served on 127.0.0.1."""
    from tests.fakes.anthropic_api import FakeAnthropic
    from tests.fakes.telegram_api import FakeTelegram

    telegram = FakeTelegram()
    telegram.add_bot(TOKEN)
    anthropic = FakeAnthropic(API_KEY)
    telegram.start()
    try:
        anthropic.start()
        try:
            yield Fakes(telegram, anthropic)
        finally:
            anthropic.stop()
    finally:
        telegram.stop()


def _bot_workspace(root: Path, fakes: Fakes) -> Path:
    """A workspace with the telegram and anthropic built-ins enabled, pointed at the fakes."""
    from grambot.secrets.store import FileSecretsStore

    scout = root / ".scout"
    scout.mkdir(parents=True)
    secrets = FileSecretsStore(scout / "secrets.json")
    secrets.set("tg", "botToken", TOKEN)
    secrets.set("claude", "apiKey", API_KEY)
    settings = {
        "agent": {"inference": "claude"},
        "plugins": [
            {
                "instanceId": "tg",
                "pluginId": "telegram",
                "enabled": True,
                "settings": {
                    "baseUrl": fakes.telegram.base_url,
                    "baseFileUrl": fakes.telegram.base_file_url,
                    "pollTimeout": 10,  # the fake holds a long poll at most 2 s, idle
                },
            },
            {
                "instanceId": "claude",
                "pluginId": "anthropic",
                "enabled": True,
                "settings": {"baseUrl": fakes.anthropic.url, "maxRetries": 0},
            },
        ],
    }
    (scout / "settings.json").write_text(json.dumps(settings, indent=2))
    return root


def _run_to_ready(
    workspace: Path, env: dict[str, str], marks: dict[str, list[float]], timeout: float = 60.0
) -> float:
    """Seconds from spawning `grambot run` to its ready line; the process is then stopped.

    Appends to `marks` the seconds at which each instance's "loaded" line arrived."""
    argv = [*_grambot_argv(), "run", "--workspace", str(workspace)]
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        while True:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("grambot run exited before ready:\n" + "".join(seen))
            at = time.perf_counter() - start
            seen.append(line)
            if (loaded := LOADED.search(line)) is not None:
                marks.setdefault(loaded.group(1), []).append(at)
            if (ready := READY.search(line)) is not None:
                names = set((ready.group(2) or "").split(", ")) - {""}
                if names != INSTANCES:
                    raise RuntimeError("not every instance loaded:\n" + "".join(seen))
                _check_status(workspace)
                return at
            if at > timeout:
                raise RuntimeError("no ready line:\n" + "".join(seen))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def _check_status(workspace: Path) -> None:
    """After the ready line, status.json must say the same (a check, not part of the timing)."""
    data = json.loads((workspace / ".scout" / "status.json").read_text())
    states = {i["instanceId"]: i["state"] for i in data["instances"]}
    if states != dict.fromkeys(INSTANCES, "loaded"):
        raise RuntimeError(f"ready line, but status.json says {states}")


def _run_to_ready_result(rounds: int, env: dict[str, str]) -> Result:
    # Anything that still read the environment would fail loudly rather than reach the network.
    run_env = {
        **env,
        "ANTHROPIC_API_KEY": "bench-poison",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
    }
    run_env.pop("PYTHONWARNINGS", None)
    sdk = [PYTHON, "-c", "import telegram, anthropic"]
    marks: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="grambot-bench-") as tmp, _fakes() as fakes:
        workspace = _bot_workspace(Path(tmp) / "bot", fakes)
        gb, base = alternate(
            lambda: _run_to_ready(workspace, run_env, marks),
            lambda: time_process(sdk, env=run_env),
            rounds,
        )
        get_me = sum(path.endswith("/getMe") for path in fakes.telegram.paths())
        anthropic_requests = len(fakes.anthropic.requests)
    value, baseline = median(gb) * 1000, median(base) * 1000
    r = ratio(value, baseline)
    loaded_ms = {name: round(median(times) * 1000, 1) for name, times in sorted(marks.items())}
    return Result(
        name="`grambot run` to ready, telegram + anthropic built-ins on local fakes "
        '(vs `python -c "import telegram, anthropic"`)',
        value=round(value, 1),
        baseline=round(baseline, 1),
        ratio=r,
        target="ratio <= 1.2",
        unit="ms",
        meets=r is not None and r <= 1.2,
        notes="spawn → the `grambot ready` log line with both instances loaded; telegram calls "
        "getMe + deleteWebhook on a fake Bot API and starts polling it, anthropic builds its "
        "client against a fake API (no model call); median loaded line "
        + ", ".join(f"{k} {v:g} ms" for k, v in loaded_ms.items())
        + f"; median of {rounds} alternated runs each",
        group=GROUP,
        details={
            "grambot_s": gb,
            "baseline_s": base,
            "loaded_line_median_ms": loaded_ms,
            "telegram_getMe_requests": get_me,
            "anthropic_requests": anthropic_requests,
        },
    )


def run(quick: bool) -> list[Result]:
    rounds = 2 if quick else 15
    env = child_env()
    results = [_cli("grambot --help", [*_grambot_argv(), "--help"], rounds, env)]
    with tempfile.TemporaryDirectory(prefix="grambot-bench-") as tmp:
        empty = Path(tmp) / "empty"
        (empty / ".scout").mkdir(parents=True)
        results.append(
            _cli(
                "grambot status",
                [*_grambot_argv(), "status", "--workspace", str(empty)],
                rounds,
                env,
                ok_codes=(0, 3),  # 3: no engine runs in the empty workspace (said clearly)
            )
        )
    results.append(_plugins_result(rounds, env))
    results.append(_run_to_ready_result(1 if quick else 7, env))
    return results


def _plugins_result(rounds: int, env: dict[str, str]) -> Result:
    """`grambot plugins` in a workspace made by `grambot init` (the 8 built-ins): its settings
    fields come from the cache (grambot.cli.plugin_list) once a first listing filled it; that first,
    cold listing is timed once and reported in the notes."""
    from grambot.cli.init import init_workspace

    with tempfile.TemporaryDirectory(prefix="grambot-bench-") as tmp:
        workspace = Path(tmp) / "ws"
        init_workspace(workspace)
        plugins_env = {**env, "GRAMBOT_CACHE_DIR": str(Path(tmp) / "cache")}
        argv = [*_grambot_argv(), "plugins", "--workspace", str(workspace)]
        cold = time_process(argv, env=plugins_env) * 1000
        result = _cli("grambot plugins", argv, rounds, plugins_env)
    result.notes += f"; settings fields cached (the first, cold listing: {cold:.0f} ms)"
    result.details = {**(result.details or {}), "cold_ms": round(cold, 1)}
    return result
