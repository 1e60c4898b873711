"""A 3-field settings model: each instance gets its own class (its own module)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Settings(BaseModel):
    greeting: str = Field("hi", description="What to say.")
    repeat: int = Field(1, ge=1, le=10)
    loud: bool = False
