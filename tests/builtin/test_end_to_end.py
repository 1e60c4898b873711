"""A whole conversation through the bot, every built-in on its real SDK against the fakes: a
Telegram update → the bot → the model (which calls web_search on Brave) → the reply on Telegram;
`/image` → gpt-image → a photo on Telegram.

Each conversation runs in the ways a user runs the bot: an engine with the built-ins in its own
process; an engine with each built-in in a process of its own (`"isolation": "process"`,
docs/isolation.md: Telegram accepts into the engine's inbox from its child, the model and Brave
answer from theirs); and the real `grambot run` process, which must not let the SDKs read the
environment's credentials. Runs where the engine has bot routing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from grambot.bot import attach_bot
from grambot.core.instance import InstanceState
from grambot.engine import Engine
from grambot.secrets.store import FileSecretsStore
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.brave_api import FakeBrave
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.telegram_api import PNG_1PX, FakeTelegram
from tests.helpers import Workspace, entry, eventually_async

pytest.importorskip("grambot.bot", reason="the engine has no bot routing here")

TOKEN = "777:end-to-end-token"
OWNER = 111
INSTANCES = ("tg", "brain", "search", "images")


class Fakes:
    def __init__(self) -> None:
        self.telegram = FakeTelegram()
        self.telegram.add_bot(TOKEN)
        self.anthropic = FakeAnthropic("ant-key-e2e")
        self.brave = FakeBrave("brave-key-e2e")
        self.openai = FakeOpenAI("openai-key-e2e")
        self.all = (self.telegram, self.anthropic, self.brave, self.openai)

    def model(self, provider: str) -> FakeAnthropic | FakeOpenAI:
        return self.anthropic if provider == "anthropic" else self.openai

    def plugins(self, provider: str) -> list[dict[str, Any]]:
        model_url = self.anthropic.url if provider == "anthropic" else f"{self.openai.url}/v1"
        return [
            entry("tg", "telegram", **self.telegram.plugin_settings(OWNER)),
            entry("brain", provider, baseUrl=model_url, maxRetries=0),
            entry("search", "brave-search", baseUrl=self.brave.url, maxRetries=0),
            entry("images", "gpt-image", baseUrl=f"{self.openai.url}/v1", maxRetries=0),
        ]

    def secrets(self, provider: str) -> dict[tuple[str, str], str]:
        return {
            ("tg", "botToken"): TOKEN,
            ("brain", "apiKey"): self.model(provider).api_key,
            ("search", "apiKey"): self.brave.token,
            ("images", "apiKey"): self.openai.api_key,
        }


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    servers = Fakes()
    for server in servers.all:
        server.start()
    try:
        yield servers
    finally:
        for server in servers.all:
            server.stop()


class InEngine:
    """The bot of an Engine in this process; `isolated`: each built-in in a child process."""

    timeout = 10.0  # for a reply

    def __init__(self, workspace: Workspace, isolated: bool) -> None:
        self.workspace = workspace
        self.isolated = isolated
        self.engine = Engine(workspace.root, entry_points=False)
        attach_bot(self.engine)

    async def start(self, fakes: Fakes, provider: str) -> None:
        for (instance_id, key), value in fakes.secrets(provider).items():
            self.engine.secrets.set(instance_id, key, value)
        plugins = fakes.plugins(provider)
        if self.isolated:
            plugins = [{**plugin, "isolation": "process"} for plugin in plugins]
        await self.engine.event_engine.start()
        await self.engine.apply(self.workspace.write(plugins, agent={"inference": "brain"}))
        for instance_id in INSTANCES:
            instance = self.engine.instance(instance_id)
            assert instance is not None
            failure = instance.failure.message if instance.failure else ""
            assert instance.state is InstanceState.LOADED, failure
            if self.isolated:
                status = instance.to_status()["isolation"]
                assert status["mode"] == "process" and status["pid"], status

    def loaded(self, instance_id: str) -> bool:
        return self.engine.state_of(instance_id) is InstanceState.LOADED

    async def wait(self, predicate: Callable[[], Any]) -> Any:
        return await eventually_async(predicate, self.timeout)

    async def stop(self) -> str:
        await self.engine.stop(drain_deadline=2.0)
        return ""


class GrambotRun:
    """The `grambot run` process on the workspace, observed through status.json."""

    timeout = 30.0  # for a reply, and for the instances to load

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.proc: subprocess.Popen[str] | None = None

    async def start(self, fakes: Fakes, provider: str) -> None:
        secrets = FileSecretsStore(self.workspace.scout / "secrets.json")
        for (instance_id, key), value in fakes.secrets(provider).items():
            secrets.set(instance_id, key, value)
        self.workspace.write(fakes.plugins(provider), agent={"inference": "brain"})
        self.proc = self._spawn()
        await self.wait(lambda: all(self.loaded(i) for i in INSTANCES))

    def _spawn(self) -> subprocess.Popen[str]:
        # Nothing of this test's loop runs meanwhile: the engine is in the child.
        return subprocess.Popen(
            [sys.executable, "-m", "grambot", "run", "--workspace", str(self.workspace.root)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def _states(self) -> dict[str, str]:
        try:
            data = json.loads((self.workspace.scout / "status.json").read_text())
        except (OSError, ValueError):
            return {}
        return {i["instanceId"]: i["state"] for i in data["instances"]}

    def loaded(self, instance_id: str) -> bool:
        return self._states().get(instance_id) == "loaded"

    async def wait(self, predicate: Callable[[], Any]) -> Any:
        """`eventually`, failing at once when `grambot run` has exited."""
        proc = self.proc
        assert proc is not None

        def running_and() -> Any:
            value = predicate()
            assert value or proc.poll() is None, "grambot run exited early"
            return value

        return await eventually_async(running_and, self.timeout, 0.05)

    async def stop(self) -> str:
        """SIGTERM; the output, once it exited 0."""
        if self.proc is None:
            return ""
        self.proc.send_signal(signal.SIGTERM)
        output, _ = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, output
        return output


Bot = InEngine | GrambotRun
WAYS: dict[str, Callable[[Workspace], Bot]] = {
    "engine": lambda ws: InEngine(ws, isolated=False),
    "isolated": lambda ws: InEngine(ws, isolated=True),
    "grambot-run": GrambotRun,
}


class Running:
    def __init__(self, bot: Bot, provider: str) -> None:
        self.bot = bot
        self.provider = provider
        self.output = ""  # of `grambot run`, once stopped


async def _run(
    request: pytest.FixtureRequest, workspace: Workspace, fakes: Fakes
) -> AsyncIterator[Running]:
    way, provider = request.param
    bot: Bot = WAYS[way](workspace)
    running = Running(bot, provider)
    try:
        await bot.start(fakes, provider)
        yield running
    finally:
        running.output = await bot.stop()
    assert "poison" not in running.output, running.output
    for secret in fakes.secrets(provider).values():
        assert secret not in running.output


@pytest.fixture(
    params=[
        ("engine", "anthropic"),
        ("isolated", "anthropic"),
        ("grambot-run", "anthropic"),
        ("grambot-run", "openai-codex"),
    ],
    ids=lambda param: "-".join(param),
)
async def asked(
    request: pytest.FixtureRequest, workspace: Workspace, fakes: Fakes, poisoned_env: str
) -> AsyncIterator[Running]:
    """A bot for the web-search conversation: each way, and `grambot run` with each model."""
    async for running in _run(request, workspace, fakes):
        yield running


@pytest.fixture(params=[("engine", "anthropic"), ("isolated", "anthropic")], ids="-".join)
async def running(
    request: pytest.FixtureRequest, workspace: Workspace, fakes: Fakes, poisoned_env: str
) -> AsyncIterator[Running]:
    async for running in _run(request, workspace, fakes):
        yield running


async def test_a_message_is_answered_with_the_help_of_a_tool(asked: Running, fakes: Fakes) -> None:
    model = fakes.model(asked.provider)
    if isinstance(model, FakeAnthropic):
        model.reply_tool_use("web_search", {"query": "grambot", "count": 1})
    else:
        model.reply_tool_call("web_search", {"query": "grambot", "count": 1})
    fakes.telegram.push_message(TOKEN, "what is grambot?", user_id=OWNER)
    sent = await asked.bot.wait(lambda: fakes.telegram.sent(TOKEN, "sendMessage"))
    (reply,) = sent
    assert str(reply["chat_id"]) == str(OWNER)
    # The model's final text (the fake echoes the tool result) quotes Brave's first result.
    assert reply["text"].startswith("echo: tool result Web results for 'grambot':")
    assert json.loads(reply["reply_parameters"])["message_id"]
    assert fakes.brave.requests[-1].query["q"] == "grambot"
    if isinstance(model, FakeAnthropic):
        second = model.bodies[-1]
        assert {t["name"] for t in second["tools"]} >= {"web_search", "image_generate"}


async def test_an_image_command_sends_a_photo(running: Running, fakes: Fakes) -> None:
    fakes.telegram.push_message(TOKEN, "/image a red square", user_id=OWNER)
    (photo,) = await running.bot.wait(lambda: fakes.telegram.sent(TOKEN, "sendPhoto"))
    assert photo["photo"] == PNG_1PX
    assert photo["caption"] == "Here is your image for: a red square"


async def test_a_failing_model_gets_an_apology_not_a_secret(running: Running, fakes: Fakes) -> None:
    fakes.anthropic.fail(401, message=f"invalid x-api-key: {fakes.anthropic.api_key}")
    fakes.telegram.push_message(TOKEN, "hello?", user_id=OWNER)
    (reply,) = await running.bot.wait(lambda: fakes.telegram.sent(TOKEN, "sendMessage"))
    assert reply["text"].startswith("Sorry,")
    assert fakes.anthropic.api_key not in reply["text"]
    assert running.bot.loaded("brain") and running.bot.loaded("tg")
