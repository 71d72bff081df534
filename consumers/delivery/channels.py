"""The Channel port: one provider (SMTP relay, SMS gateway, WhatsApp API) behind ``send``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

_MAX_TEXT = 1024


class Outcome(StrEnum):
    SENT = "sent"
    # Worth retrying later: SMTP 4xx, timeouts, connection refused, HTTP 429/5xx.
    TEMPORARY = "temporary"
    # Never retried: SMTP 5xx, invalid number, HTTP 4xx other than 408/425/429.
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    message_id: str
    campaign_id: str
    recipient_id: str
    address: str
    subject: str | None
    body: str


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    code: str | None = None
    text: str | None = None
    provider_message_id: str | None = None
    # Seconds the provider asked us to wait (HTTP Retry-After), when it did.
    retry_after_s: float | None = None

    def __post_init__(self) -> None:
        if self.text is not None and len(self.text) > _MAX_TEXT:
            object.__setattr__(self, "text", self.text[:_MAX_TEXT])


class Channel(Protocol):
    """One provider. ``send`` never raises for provider answers: it classifies them."""

    @property
    def provider(self) -> str: ...

    # Dependency label for DEPENDENCY_SECONDS (smtp, sms, whatsapp).
    @property
    def dependency(self) -> str: ...

    async def send(self, message: OutgoingMessage) -> SendResult: ...

    async def close(self) -> None: ...
