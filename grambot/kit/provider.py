"""A base for a provider over a keyed web API, and the `plugin` of its entry module.

`KeyedProvider` holds what every such provider does the same way: it reads the `apiKey` secret
and opens its client in `connect()` (`load` is connect, then `register`), closes it in
`unload()`, and raises `grambot.ServiceError` naming the instance and the service, with the key
scrubbed from the text. A subclass says which `service` it speaks to and gives `open(key)`
(make the client), `register(registrar)` and `check()`; `SdkProvider` (kit.sdk_provider) is
that for the anthropic and openai SDKs, and `InferenceBase` / `ImageBase` register it as the
one or the other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from grambot.contract.definition import Plugin
from grambot.errors import ServiceError
from grambot.kit.checks import run_check
from grambot.kit.connection import ServiceSettings
from grambot.kit.sdk_errors import scrub
from grambot.registries.images import GeneratedImage
from grambot.registries.inference import ChatMessage, InferenceRequest, InferenceResponse

if TYPE_CHECKING:
    from pydantic import BaseModel

    from grambot.contract.api import PluginApi
    from grambot.contract.registrar import PluginRegistrar

__all__ = ["ImageBase", "InferenceBase", "KeyedProvider", "provider_plugin", "split_system"]

SECRET = "apiKey"


class KeyedProvider(ABC):
    service: ClassVar[str]  # the `service` of its ServiceErrors ("anthropic", "gemini")
    role: ClassVar[str] = "provider"  # in "the provider is not loaded"
    settings: ServiceSettings

    def __init__(self, api: PluginApi) -> None:
        self.api = api
        self.settings = api.settings
        self.id = api.instance.instance_id
        self._key: str | None = None
        self._client: Any = None

    @abstractmethod
    async def open(self, key: str) -> Any:
        """The client for this instance, given its key (no request is sent)."""

    @abstractmethod
    def register(self, registrar: PluginRegistrar) -> None: ...

    @abstractmethod
    async def check(self) -> str:
        """Ask the service one cheap question with the key (`grambot check`)."""

    async def close(self, client: Any) -> None:
        await client.close()

    async def load(self) -> None:
        await self.connect()
        self.register(self.api.registrar)

    async def connect(self) -> None:
        """Read the key and open the client: what `load` does, without registering."""
        self._key = self.api.secrets.require(SECRET)
        self._client = await self.open(self._key)

    async def unload(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await self.close(client)

    @property
    def client(self) -> Any:
        """The open client; an `unavailable` ServiceError before load and after unload."""
        if self._client is None:
            raise self.error("unavailable", f"the {self.role} is not loaded")
        return self._client

    def error(
        self,
        kind: str,
        text: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> ServiceError:
        return ServiceError(
            scrub(text, self._key),
            instance_id=self.id,
            service=self.service,
            kind=kind,
            status=status,
            retry_after=retry_after,
        )

    def bad_response(self, text: str) -> ServiceError:
        return self.error(
            "bad-response", f"unexpected answer from {self.settings.base_url}: {text}"
        )


def split_system(messages: Sequence[ChatMessage]) -> tuple[str, list[ChatMessage]]:
    """The `system` turns' texts joined by blank lines (the APIs take them apart from the
    conversation), and the other turns in order."""
    system = [m.content for m in messages if m.role == "system" and m.content]
    return "\n\n".join(system), [m for m in messages if m.role != "system"]


class InferenceBase(KeyedProvider):
    """An inference provider whose settings have `model` (the default), `models` (more on
    offer) and `label`: first in the bases, `class P(InferenceBase, SdkProvider)`."""

    settings: Any

    def __init__(self, api: PluginApi) -> None:
        super().__init__(api)
        self.label: str = self.settings.label

    def models(self) -> Sequence[str]:
        return list(dict.fromkeys([self.settings.model, *self.settings.models]))

    @abstractmethod
    async def complete(self, request: InferenceRequest) -> InferenceResponse: ...

    def register(self, registrar: PluginRegistrar) -> None:
        registrar.register_inference_provider(self)


class ImageBase(KeyedProvider):
    """An image provider, saving into `images_dir` (`<data dir>/images/`): first in the bases,
    `class P(ImageBase, SdkProvider)`."""

    role = "image provider"

    def __init__(self, api: PluginApi) -> None:
        super().__init__(api)
        self.images_dir = api.data_dir / "images"

    @abstractmethod
    async def generate(
        self, prompt: str, *, size: str | None = None, count: int = 1, model: str | None = None
    ) -> Sequence[GeneratedImage]: ...

    def register(self, registrar: PluginRegistrar) -> None:
        registrar.register_image_provider(self)


def provider_plugin(
    settings_schema: type[BaseModel], provider: Callable[[], Callable[[PluginApi], KeyedProvider]]
) -> Plugin:
    """`plugin = provider_plugin(Settings, _provider)`: `create` makes the provider, `check`
    connects a fresh one, asks its `check()` and closes it. `provider()` imports the provider
    module, only when an instance is created or checked, so listing plugins never does."""

    def create(api: PluginApi) -> KeyedProvider:
        return provider()(api)

    async def check(api: PluginApi) -> str:
        """A live check (`grambot check`): one cheap request with this instance's key."""
        return await run_check(provider()(api))

    return Plugin(settings_schema=settings_schema, create=create, check=check)
