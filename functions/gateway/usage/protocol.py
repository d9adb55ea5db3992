"""Wire model of `GET /v1/usage` (usage_report builds it as a dict; this documents it)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Counts(BaseModel):
    requests: int = Field(description="Requests recorded (errors and refusals included).")
    prompt_tokens: int = Field(description="Prompt tokens billed.")
    completion_tokens: int = Field(description="Completion tokens billed.")
    total_tokens: int = Field(description="Prompt plus completion tokens.")
    errors: int = Field(description="Requests that ended in an error or a limit's refusal.")
    rate_limited: int = Field(
        description="Requests refused by the key's limits (429; also counted in `errors`)."
    )
    cached_tokens: int = Field(
        description="Of prompt_tokens, those the model servers found in their prefix cache."
    )


class UsageRow(Counts):
    date: str | None = Field(None, description="The UTC day (YYYY-MM-DD), with group_by=day.")
    model: str | None = Field(None, description="The model, with group_by=model.")
    route: str | None = Field(
        None,
        description="The API route (chat, completions, embeddings, responses, messages), with "
        "group_by=route.",
    )


class Limits(BaseModel):
    rpm: int | None = Field(description="Requests per minute (null: unlimited).")
    tpm: int | None = Field(description="Tokens per minute (null: unlimited).")
    monthly_tokens: int | None = Field(description="Tokens per UTC month (null: unlimited).")


class Month(BaseModel):
    month: str = Field(description="This UTC month, YYYY-MM.")
    used_tokens: int = Field(
        description="Tokens the monthly budget counts this month (in-flight reservations included)."
    )
    remaining_tokens: int | None = Field(description="What is left (null: no budget).")


class UsageReport(BaseModel):
    object: Literal["usage"] = Field("usage", description="Always `usage`.")
    key_id: str = Field(description="The calling key's id.")
    start: str = Field(description="First day of the range (UTC, YYYY-MM-DD).")
    end: str = Field(description="Last day of the range (UTC, YYYY-MM-DD).")
    group_by: Literal["day", "model", "route"] = Field(description="How `data` is grouped.")
    data: list[UsageRow] = Field(description="One row per day with usage, per model or per route.")
    totals: Counts = Field(description="The sum of `data`.")
    limits: Limits = Field(description="The key's limits.")
    month: Month = Field(description="This month's budget use.")
