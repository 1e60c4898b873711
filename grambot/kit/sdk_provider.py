"""`SdkProvider`: a `KeyedProvider` whose client comes from a vendor SDK (anthropic, openai).

The SDK is imported in `open()`, when an instance loads (off the event loop), never when the
plugin is listed; the client is given the key and base URL explicitly, so the SDK's own
environment variables and profile files are never read. `call()` awaits one SDK call within
the `deadline` setting and turns the SDK's exceptions into ServiceError (kit.sdk_errors).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from grambot.kit.checks import model_ids
from grambot.kit.connection import OpenAISettings, SdkSettings
from grambot.kit.provider import KeyedProvider
from grambot.kit.sdk import import_sdk
from grambot.kit.sdk_errors import to_service_error

if TYPE_CHECKING:
    from grambot.contract.api import PluginApi

__all__ = ["OpenAISdkProvider", "SdkProvider"]

T = TypeVar("T")


class SdkProvider(KeyedProvider):
    sdk: ClassVar[str]  # the module: "anthropic"
    client_class: ClassVar[str]  # its async client: "AsyncAnthropic"
    needed_by: ClassVar[str | None] = None  # who needs the SDK, in MissingDependency
    settings: SdkSettings

    def __init__(self, api: PluginApi) -> None:
        super().__init__(api)
        self._sdk: ModuleType | None = None

    def client_options(self) -> dict[str, Any]:
        """More keyword arguments for the client (none by default)."""
        return {}

    async def open(self, key: str) -> Any:
        # ~1 s to import: done off the event loop so that other instances keep loading.
        needed_by = self.needed_by or f"plugin {self.api.instance.plugin_id!r}"
        sdk = await asyncio.to_thread(import_sdk, self.sdk, needed_by=needed_by)
        self._sdk = sdk
        s = self.settings
        return getattr(sdk, self.client_class)(
            api_key=key,  # explicit: the SDK's API-key variable and profiles are never read
            base_url=s.base_url,  # explicit: its base-URL variable is never read
            timeout=sdk.Timeout(s.timeout, connect=s.connect_timeout),
            max_retries=s.max_retries,
            **self.client_options(),
        )

    async def check(self) -> str:
        """List the models: the key is checked and nothing is generated."""
        page = await self.call(
            self.client.models.list(), "model list", deadline=self.settings.timeout
        )
        return model_ids(page)

    async def call(self, call: Awaitable[T], what: str, *, deadline: float | None = None) -> T:
        """Await one SDK call within `deadline` seconds (default: the `deadline` setting),
        the SDK's retries included; its failures come out as ServiceError (`what` names the
        missing result in the timeout message)."""
        s = self.settings
        limit = s.deadline if deadline is None else deadline
        try:
            async with asyncio.timeout(limit):
                return await call
        except TimeoutError:
            raise self.error("timeout", f"no {what} within the deadline of {limit:g} s") from None
        except Exception as exc:
            if self._sdk is None:
                raise
            error = to_service_error(
                exc,
                self._sdk,
                instance_id=self.id,
                service=self.service,
                secret=self._key,
                base_url=s.base_url,
                timeout=s.timeout,
                retries=s.max_retries,
            )
            if error is None:
                raise
            raise error from None


class OpenAISdkProvider(SdkProvider):
    """On the openai SDK, with the organization and project of OpenAISettings."""

    sdk = "openai"
    client_class = "AsyncOpenAI"
    settings: OpenAISettings

    def client_options(self) -> dict[str, Any]:
        return {"organization": self.settings.organization, "project": self.settings.project}

    async def open(self, key: str) -> Any:
        client = await super().open(key)
        # Unset, the SDK fills them from OPENAI_ORG_ID / OPENAI_PROJECT_ID: settle them to
        # this instance's settings.
        client.organization = self.settings.organization
        client.project = self.settings.project
        return client
