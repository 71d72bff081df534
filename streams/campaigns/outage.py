"""Outage responses (``net.responses``) -> campaign actions, pure.

- ``PAUSE_MARKETING`` / ``RESUME_MARKETING``: the listed logins' customers are held (bulk
  marketing and billing fan-out waits for them) until the outage's resume.
- ``SUBSCRIBER_NOTICE``: one transactional ``purpose=service`` message to the login's customer,
  planned through the same code as a campaign (consent, address, window, sandboxed template) as
  a synthetic campaign whose id is derived from the alert: every notice of one outage to one
  customer has the same message id, so two logins of one customer, or a replayed response,
  are one message after the delivery ledger.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from streams.campaigns.plan import (
    NAMESPACE,
    Audience,
    CampaignSpec,
    FrequencyHistory,
    PlannedMessage,
    plan_campaign,
    to_ms,
)
from streams.campaigns.state import SubscriberState

SUBSCRIBER_NOTICE = "SUBSCRIBER_NOTICE"
PAUSE_MARKETING = "PAUSE_MARKETING"
RESUME_MARKETING = "RESUME_MARKETING"


def apply_hold(state: SubscriberState, response: Mapping[str, Any]) -> bool:
    """Update the outage holds from one response; True when it changed them."""
    kind = str(response["kind"])
    alert = str(response["alert_id"])
    if kind == PAUSE_MARKETING:
        state.hold_outage(alert, list(response.get("login_ids") or ()))
        return True
    if kind == RESUME_MARKETING:
        state.release_outage(alert)
        return True
    return False


def outage_campaign_id(alert_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"outage/{alert_id}"))


def notice_campaign(
    response: Mapping[str, Any],
    *,
    channels: Sequence[str],
    subject: str,
    body: str,
    window: tuple[int, int],
    timezone: str,
) -> CampaignSpec:
    device = response.get("root_device_name") or response.get("root_device_id")
    return CampaignSpec(
        campaign_id=outage_campaign_id(str(response["alert_id"])),
        name=f"Aviso de falha na rede: {device}",
        channels=tuple(channels),
        subject=subject,
        body=body,
        audience=Audience(),
        schedule_at_ms=None,
        window_start_min=window[0],
        window_end_min=window[1],
        timezone=timezone,
        frequency_cap=None,
        lane="transactional",
        purpose="service",
    )


def notice_messages(
    response: Mapping[str, Any],
    state: SubscriberState,
    now_ms: int,
    *,
    channels: Sequence[str],
    subject: str,
    body: str,
    window: tuple[int, int] = (0, 1440),
    timezone: str = "America/Sao_Paulo",
) -> tuple[CampaignSpec, list[PlannedMessage]]:
    """The notice for one SUBSCRIBER_NOTICE: on the first of ``channels`` the customer can be
    reached on (not opted out, valid address); empty when none or the login is unknown.

    Raises CampaignError when the configured template is broken."""
    campaign = notice_campaign(
        response, channels=channels, subject=subject, body=body, window=window, timezone=timezone
    )
    login_id = response.get("login_id") or next(iter(response.get("login_ids") or ()), None)
    login = state.logins.get(str(login_id)) if login_id else None
    if str(response["kind"]) != SUBSCRIBER_NOTICE or login is None:
        return campaign, []
    extra = {
        "device": response.get("root_device_name") or response.get("root_device_id"),
        "outage_started_at": to_ms(response.get("outage_started_at")),
    }
    for channel in channels:
        one = replace(campaign, channels=(channel,))
        plan = plan_campaign(
            one, state, FrequencyHistory(), now_ms, only={login.customer_id}, extra=extra
        )
        if plan.messages:
            return campaign, list(plan.messages)
    return campaign, []
