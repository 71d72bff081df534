"""SMS / WhatsApp Business / any messaging HTTP API as configuration (HttpChannelSettings).

The request (method, URL, headers, body) is rendered from sandboxed Jinja2 templates; the answer
is classified by status code (success / temporary / permanent) and optional body regexes; a
Retry-After header (seconds or HTTP date) is passed up to the retry policy.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from consumers.delivery.channels import Outcome, OutgoingMessage, SendResult
from filas.errors import ConfigurationError
from filas.settings import HttpChannelSettings


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def json_path(document: Any, path: str) -> str | None:
    node = document
    for part in path.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return None if node is None or isinstance(node, dict | list) else str(node)


class HttpChannel:
    def __init__(self, settings: HttpChannelSettings, dependency: str = "sms") -> None:
        self.settings = settings
        self._dependency = dependency
        env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
        try:
            self._url = env.from_string(settings.url)
            self._body = env.from_string(settings.body_template)
            self._headers = {k: env.from_string(v) for k, v in settings.headers.items()}
        except TemplateError as exc:
            raise ConfigurationError(f"{settings.provider}: bad request template: {exc}") from exc
        self._permanent = (
            re.compile(settings.permanent_body_pattern) if settings.permanent_body_pattern else None
        )
        self._temporary = (
            re.compile(settings.temporary_body_pattern) if settings.temporary_body_pattern else None
        )
        self._session: aiohttp.ClientSession | None = None

    @property
    def provider(self) -> str:
        return self.settings.provider

    @property
    def dependency(self) -> str:
        return self._dependency

    def _variables(self, message: OutgoingMessage) -> dict[str, Any]:
        s = self.settings
        return {
            "to": message.address,
            "body": message.body,
            "subject": message.subject,
            "message_id": message.message_id,
            "recipient_id": message.recipient_id,
            "campaign_id": message.campaign_id,
            "username": s.username,
            "password": s.password.get_secret_value() if s.password else None,
            "token": s.token.get_secret_value() if s.token else None,
        }

    def render(self, message: OutgoingMessage) -> tuple[str, dict[str, str], str]:
        """(url, headers, body) for ``message``; a template error is a permanent failure."""
        variables = self._variables(message)
        return (
            self._url.render(variables),
            {k: t.render(variables) for k, t in self._headers.items()},
            self._body.render(variables),
        )

    def classify(self, status: int, text: str) -> Outcome:
        if self._permanent is not None and self._permanent.search(text):
            return Outcome.PERMANENT
        if self._temporary is not None and self._temporary.search(text):
            return Outcome.TEMPORARY
        if status in self.settings.success_statuses:
            return Outcome.SENT
        if status in self.settings.temporary_statuses:
            return Outcome.TEMPORARY
        return Outcome.PERMANENT

    async def send(self, message: OutgoingMessage) -> SendResult:
        s = self.settings
        try:
            url, headers, body = self.render(message)
        except TemplateError as exc:
            return SendResult(Outcome.PERMANENT, None, f"request template: {exc}")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=s.timeout_s),
                connector=aiohttp.TCPConnector(limit=max(1, s.concurrency)),
            )
        auth = None
        if s.basic_auth and s.username is not None and s.password is not None:
            auth = aiohttp.BasicAuth(s.username, s.password.get_secret_value())
        try:
            async with self._session.request(
                s.method,
                url,
                headers=headers,
                data=None if s.method == "GET" else body.encode(),
                auth=auth,
            ) as response:
                text = await response.text(errors="replace")
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return SendResult(Outcome.TEMPORARY, None, f"{type(exc).__name__}: {exc}")
        outcome = self.classify(status, text)
        provider_id = None
        if outcome is Outcome.SENT and s.provider_id_path:
            try:
                provider_id = json_path(json.loads(text), s.provider_id_path)
            except ValueError:
                provider_id = None
        return SendResult(outcome, str(status), text, provider_id, retry_after)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
