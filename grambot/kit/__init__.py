"""Helpers for plugin authors, shared by the built-ins: a base for providers over a keyed API
(provider, sdk_provider, connection), HTTP with bounded retries, SDK errors mapped to
`grambot.ServiceError`, saving generated images. Nothing here imports an SDK at import time:
`SdkProvider` imports its SDK when an instance loads, and the helpers take the module (httpx,
anthropic, openai) the caller imported then."""
