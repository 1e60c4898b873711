"""Helpers for plugin authors, shared by the built-ins: HTTP with bounded retries, SDK errors
mapped to `grambot.ServiceError`, saving generated images. Nothing here imports an SDK: the
caller passes in the module (httpx, anthropic, openai) it imported at load time."""
