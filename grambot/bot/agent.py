"""The `agent` key of settings.json: which inference instance answers, and within what limits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from grambot.settings import thaw

DEFAULT_SYSTEM_PROMPT = "You are grambot, a helpful assistant in a chat. Answer briefly."


class AgentSettings(BaseModel):
    """`"agent": {"inference": "anthropic", "model": null, ...}` (all keys optional)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    inference: str | None = Field(
        None, description="Instance id of the inference provider; default: the first registered."
    )
    model: str | None = Field(None, description="Model name passed to the provider.")
    system_prompt: str = Field(DEFAULT_SYSTEM_PROMPT, alias="systemPrompt")
    tools: list[str] | None = Field(
        None, description="Tool names the model may call; default: every registered tool."
    )
    image_provider: str | None = Field(
        None, alias="imageProvider", description="Instance id for /image; default: the first."
    )
    max_tool_steps: int = Field(5, alias="maxToolSteps", ge=0, le=50)
    max_history: int = Field(40, alias="maxHistory", ge=2, le=1000)
    reply_timeout: float = Field(120.0, alias="replyTimeoutSeconds", gt=0)


def read_agent_settings(raw: Mapping[str, Any] | None) -> tuple[AgentSettings, str | None]:
    """The agent settings, or the defaults plus a message saying what was wrong."""
    if raw is None:
        return AgentSettings.model_validate({}), None
    try:
        return AgentSettings.model_validate(thaw(raw)), None
    except ValidationError as exc:
        problems = "; ".join(
            f"agent.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return AgentSettings.model_validate({}), problems
