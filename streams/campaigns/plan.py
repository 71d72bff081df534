"""Campaign planning, pure: a campaign + subscriber state -> every message, or one clear error.

No I/O here (unit-tested with plain objects). ``plan_campaign`` renders EVERY recipient before
the runner publishes the first message, so a template error fails the campaign with nothing
sent (docs/campaigns.md#fan-out, docs/decisions/0071-campaign-plan-before-publish.md).

- Templates: Jinja in a ``SandboxedEnvironment`` with ``StrictUndefined`` (an unknown variable or
  an unsafe attribute is an error, never an empty string).
- Audience: over the customer (active, city, tags) and its contracts (status, plan, days
  overdue); a customer matches through its first matching contract, by contract id.
- Consent (LGPD): channel opt-outs skip every purpose; ``purpose=marketing`` also needs
  ``Customer.marketing_consent`` and no marketing opt-out.
- Send window: ``not_before`` moved into the window in the customer's timezone.
- Frequency cap: per recipient, channel and lane within 24 h, counting other campaigns only, so
  re-planning the same campaign after a crash gives the same messages.
- Message ids: UUIDv5 of (campaign, recipient, channel): re-expansion reproduces them and the
  delivery ledger deduplicates.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from filas.errors import FilasError
from streams.campaigns.consent import OPT_OUT, skip_reason
from streams.campaigns.state import ContractEntry, CustomerEntry, SubscriberState

DAY_MS = 86_400_000
NAMESPACE = uuid.UUID("6f1c3c1e-6a44-5b1e-9a57-0b4f1a2c7d10")
_NAMESPACE_BYTES = NAMESPACE.bytes
EMAIL = "email"
SMS_LIKE = ("sms", "whatsapp")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NON_DIGITS = re.compile(r"\D")


class CampaignError(FilasError):
    """A campaign that cannot be sent as defined; the campaign is marked failed."""

    def __init__(self, message: str, *, code: str = "campaign_invalid") -> None:
        super().__init__(message, code=code, retriable=False)


def message_id(campaign_id: str, recipient_id: str, channel: str) -> str:
    """Deterministic id of (campaign, recipient, channel): the same on every re-expansion.

    ``uuid.uuid5`` (RFC 4122 name-based, SHA-1), computed without building a UUID object."""
    digest = bytearray(
        hashlib.sha1(  # noqa: S324 - RFC 4122 UUIDv5 is defined on SHA-1; not a security use
            _NAMESPACE_BYTES + f"{campaign_id}/{recipient_id}/{channel}".encode()
        ).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def to_ms(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)


@dataclass(frozen=True, slots=True)
class Audience:
    contract_statuses: frozenset[str] = frozenset()
    cities: frozenset[str] = frozenset()
    plan_ids: frozenset[str] = frozenset()
    min_days_overdue: int | None = None
    min_amount_overdue: Decimal | None = None
    tags: frozenset[str] = frozenset()

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Audience:
        return cls(
            contract_statuses=frozenset(record.get("contract_statuses") or ()),
            cities=frozenset(record.get("cities") or ()),
            plan_ids=frozenset(record.get("plan_ids") or ()),
            min_days_overdue=record.get("min_days_overdue"),
            min_amount_overdue=record.get("min_amount_overdue"),
            tags=frozenset(record.get("tags") or ()),
        )

    @property
    def filters_contracts(self) -> bool:
        return bool(self.contract_statuses or self.plan_ids or self.min_days_overdue is not None)

    def contract_matches(self, contract: ContractEntry) -> bool:
        if self.contract_statuses and not (
            {contract.status, contract.ixc_status, contract.ixc_internet_status}
            & self.contract_statuses
        ):
            return False
        if self.plan_ids and contract.plan_id not in self.plan_ids:
            return False
        if self.min_days_overdue is not None:
            return (contract.days_overdue or 0) >= self.min_days_overdue
        return True

    def select(
        self, customer: CustomerEntry, contracts: Mapping[str, ContractEntry]
    ) -> tuple[bool, ContractEntry | None]:
        """(matches, the contract the message is about)."""
        if not customer.active:
            return False, None
        if self.cities and customer.city_id not in self.cities:
            return False, None
        if self.tags and not self.tags <= customer.tags:
            return False, None
        ordered = [contracts[k] for k in sorted(contracts)]
        if not self.filters_contracts:
            return True, ordered[0] if ordered else None
        for contract in ordered:
            if self.contract_matches(contract):
                return True, contract
        return False, None


@dataclass(frozen=True, slots=True)
class CampaignSpec:
    """A ``create`` command of ``ixc.filas.campaign.Campaign``, decoded."""

    campaign_id: str
    name: str
    channels: tuple[str, ...]
    subject: str | None
    body: str
    audience: Audience
    schedule_at_ms: int | None
    window_start_min: int
    window_end_min: int
    timezone: str
    frequency_cap: int | None
    lane: str
    purpose: str

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> CampaignSpec:
        template = record["template"]
        return cls(
            campaign_id=str(record["campaign_id"]),
            name=str(record["name"]),
            channels=tuple(dict.fromkeys(str(c) for c in record["channels"])),
            subject=template.get("subject"),
            body=str(template["body"]),
            audience=Audience.from_record(record.get("audience") or {}),
            schedule_at_ms=to_ms(record.get("schedule_at")),
            window_start_min=int(record.get("send_window_start_min", 480)),
            window_end_min=int(record.get("send_window_end_min", 1200)),
            timezone=str(record.get("timezone") or "America/Sao_Paulo"),
            frequency_cap=record.get("frequency_cap_per_day"),
            lane=str(record.get("lane") or "bulk"),
            purpose=str(record.get("purpose") or "marketing"),
        )


@dataclass(frozen=True, slots=True)
class PlannedMessage:
    message_id: str
    recipient_id: str
    channel: str
    contract_id: str | None
    address: str
    subject: str | None
    body: str
    not_before_ms: int
    # Recipient inside an active outage: deferred by the runner, not published yet.
    held: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.recipient_id, self.channel)


def cursor_text(key: tuple[str, str]) -> str:
    return f"{key[0]}/{key[1]}"


def parse_cursor(text: str | None) -> tuple[str, str] | None:
    if not text:
        return None
    recipient, _, channel = text.rpartition("/")
    return (recipient, channel)


@dataclass
class PlanCounts:
    matched: int = 0
    planned: int = 0
    skipped_no_consent: int = 0
    skipped_opt_out: int = 0
    skipped_invalid_address: int = 0
    skipped_frequency_cap: int = 0
    held_outage: int = 0


@dataclass(frozen=True)
class Plan:
    campaign: CampaignSpec
    # Sorted by (recipient_id, channel): the order publication and the resume cursor follow.
    messages: tuple[PlannedMessage, ...]
    counts: PlanCounts

    def start_after(self, cursor: tuple[str, str] | None) -> int:
        """Index of the first message after ``cursor`` (0 without one)."""
        if cursor is None:
            return 0
        return bisect_right([m.key for m in self.messages], cursor)


# --- templates ------------------------------------------------------------------------------


def brl(value: Any) -> str:
    """Decimal -> 'R$ 1.234,56' (Brazilian format)."""
    amount = Decimal(str(value)).quantize(Decimal("0.01"))
    text = f"{amount:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")
    return f"R$ {text}"


def _environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    env.filters["brl"] = brl
    return env


_ENV = _environment()


def compile_template(source: str, what: str) -> Template:
    try:
        return _ENV.from_string(source)
    except TemplateError as exc:
        raise CampaignError(f"{what} template: {exc}", code="campaign_template_error") from exc


_GLOBALS = dict(_ENV.globals)


def render(template: Template, variables: Mapping[str, Any], what: str, recipient: str) -> str:
    """``template.render`` without copying the environment's globals ChainMap per call (about
    half of Jinja's per-render cost): the context's parent is one plain dict."""
    try:
        context = template.new_context({**_GLOBALS, **variables}, shared=True)
        return "".join(template.root_render_func(context))
    except Exception as exc:  # any failure (undefined, sandbox, 1/0) fails the campaign
        raise CampaignError(
            f"{what} template failed for recipient {recipient}: {type(exc).__name__}: {exc}",
            code="campaign_template_error",
        ) from exc


def template_variables(
    campaign: CampaignSpec, customer: CustomerEntry, contract: ContractEntry | None, channel: str
) -> dict[str, Any]:
    """The variables a template sees (docs/campaigns.md lists them)."""
    first_name = customer.name.split()[0].title() if customer.name.strip() else ""
    return {
        "campaign_name": campaign.name,
        "channel": channel,
        "customer_id": customer.customer_id,
        "name": customer.name,
        "first_name": first_name,
        "email": customer.email,
        "mobile_phone": customer.mobile_phone,
        "city_id": customer.city_id,
        "state": customer.state,
        "tags": sorted(customer.tags),
        "contract_id": contract.contract_id if contract else None,
        "plan_id": contract.plan_id if contract else None,
        "plan_name": contract.plan_name if contract else None,
        "contract_status": contract.status if contract else None,
        "days_overdue": contract.days_overdue if contract else None,
        "monthly_price": contract.monthly_price if contract else None,
    }


# --- addresses, windows, caps ---------------------------------------------------------------


def normalize_email(raw: str | None) -> str | None:
    if not raw:
        return None
    text = raw.strip()
    if not _EMAIL_RE.match(text):
        return None
    local, _, domain = text.rpartition("@")
    return f"{local}@{domain.lower()}"


def normalize_phone(raw: str | None, country: str = "55") -> str | None:
    """IXC's mobile digits -> E.164 ('+5567999990000'); None when it cannot be a mobile."""
    if not raw:
        return None
    text = raw.strip()
    digits = _NON_DIGITS.sub("", text)
    if text.startswith("+") and 10 <= len(digits) <= 15:
        return "+" + digits
    digits = digits.lstrip("0")  # 0xx trunk prefix, 0055 international prefix
    if digits.startswith(country) and len(digits) in (12, 13):
        return "+" + digits
    if len(digits) in (10, 11):  # DDD + number
        return f"+{country}{digits}"
    return None


def zone(name: str, fallback: str) -> ZoneInfo:
    for candidate in (name, fallback):
        if not candidate:
            continue
        try:
            return ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


def place_in_window(at_ms: int, tz: ZoneInfo, start_min: int, end_min: int) -> int:
    """The first instant >= ``at_ms`` inside the daily window [start, end) local time.

    start == end (or 0..1440) means no window. A window with start > end crosses midnight
    (e.g. 1320..360 = 22:00-06:00)."""
    start_min, end_min = max(0, min(start_min, 1440)), max(0, min(end_min, 1440))
    if start_min == end_min or (start_min == 0 and end_min == 1440):
        return at_ms
    local = datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(tz)
    minute = local.hour * 60 + local.minute
    inside = (
        start_min <= minute < end_min
        if start_min < end_min
        else minute >= start_min or minute < end_min
    )
    if inside:
        return at_ms
    day = local.date() if minute < start_min else local.date() + timedelta(days=1)
    opens = datetime(day.year, day.month, day.day, tzinfo=tz) + timedelta(minutes=start_min)
    # Wall-clock arithmetic then a round trip through UTC resolves DST gaps.
    return int(opens.astimezone(UTC).timestamp() * 1000)


@dataclass
class FrequencyHistory:
    """Messages queued per (recipient, channel, lane): (not_before_ms, campaign_id) entries."""

    entries: dict[tuple[str, str, str], list[tuple[int, str]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def add(self, campaign_id: str, recipient: str, channel: str, lane: str, at_ms: int) -> None:
        self.entries[(recipient, channel, lane)].append((at_ms, campaign_id))

    def count(
        self, recipient: str, channel: str, lane: str, at_ms: int, exclude_campaign: str
    ) -> int:
        """Messages of OTHER campaigns within 24 h of ``at_ms`` (either side)."""
        found = self.entries.get((recipient, channel, lane))
        if not found:
            return 0
        return sum(1 for t, c in found if c != exclude_campaign and abs(t - at_ms) < DAY_MS)

    def replace_campaign(
        self, campaign_id: str, lane: str, messages: Iterable[PlannedMessage]
    ) -> None:
        """Forget the campaign's entries, then record ``messages`` (its plan or what it sent)."""
        self.drop_campaign(campaign_id)
        for m in messages:
            self.add(campaign_id, m.recipient_id, m.channel, lane, m.not_before_ms)

    def drop_campaign(self, campaign_id: str) -> None:
        for key in list(self.entries):
            kept = [e for e in self.entries[key] if e[1] != campaign_id]
            if kept:
                self.entries[key] = kept
            else:
                del self.entries[key]

    def prune(self, before_ms: int) -> None:
        for key in list(self.entries):
            kept = [e for e in self.entries[key] if e[0] >= before_ms]
            if kept:
                self.entries[key] = kept
            else:
                del self.entries[key]


# --- the plan -------------------------------------------------------------------------------


def validate(campaign: CampaignSpec) -> tuple[Template | None, Template]:
    """Checks that need no recipient; returns the compiled (subject, body) templates."""
    if not campaign.channels:
        raise CampaignError("campaign has no channel", code="campaign_invalid")
    unknown = [c for c in campaign.channels if c != EMAIL and c not in SMS_LIKE]
    if unknown:
        raise CampaignError(f"unknown channels {unknown}", code="campaign_invalid")
    if EMAIL in campaign.channels and not campaign.subject:
        raise CampaignError("an e-mail campaign needs a subject", code="campaign_invalid")
    if campaign.audience.min_amount_overdue is not None:
        raise CampaignError(
            "audience.min_amount_overdue cannot be evaluated: the IXC state topics carry no "
            "amount overdue (use min_days_overdue)",
            code="campaign_audience_unsupported",
        )
    try:
        ZoneInfo(campaign.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CampaignError(
            f"unknown timezone {campaign.timezone!r}", code="campaign_invalid"
        ) from exc
    subject = compile_template(campaign.subject, "subject") if campaign.subject else None
    return subject, compile_template(campaign.body, "body")


def plan_campaign(
    campaign: CampaignSpec,
    state: SubscriberState,
    history: FrequencyHistory,
    now_ms: int,
    *,
    held: Collection[str] = frozenset(),
    hold_purposes: Collection[str] = ("marketing", "billing"),
    only: Collection[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Plan:
    """Every message of ``campaign`` against ``state`` at ``now_ms``; raises CampaignError.

    ``held``: customer ids inside an active outage; their messages are planned with
    ``held=True`` when the campaign is bulk and its purpose is in ``hold_purposes``.
    ``only``: plan just these customer ids (releasing held recipients).
    ``extra``: more template variables (outage notices: device, outage_started_at).
    """
    subject_t, body_t = validate(campaign)
    start_ms = max(now_ms, campaign.schedule_at_ms or now_ms)
    holds = campaign.lane == "bulk" and campaign.purpose in hold_purposes
    counts = PlanCounts()
    messages: list[PlannedMessage] = []
    windows: dict[str, int] = {}
    with state.lock:
        ids = (
            sorted(state.customers) if only is None else sorted(set(only) & state.customers.keys())
        )
        for customer_id in ids:
            customer = state.customers[customer_id]
            matches, contract = campaign.audience.select(
                customer, state.contracts_by_customer.get(customer_id, {})
            )
            if not matches:
                continue
            counts.matched += 1
            opt_out = state.opt_outs.get(customer_id)
            # Every recipient starts at start_ms: the window depends only on the timezone.
            not_before = windows.get(customer.timezone)
            if not_before is None:
                not_before = windows[customer.timezone] = place_in_window(
                    start_ms,
                    zone(customer.timezone, campaign.timezone),
                    campaign.window_start_min,
                    campaign.window_end_min,
                )
            for channel in sorted(campaign.channels):
                refused = skip_reason(
                    campaign.purpose, channel, customer.marketing_consent, opt_out
                )
                if refused == OPT_OUT:
                    counts.skipped_opt_out += 1
                    continue
                if refused is not None:
                    counts.skipped_no_consent += 1
                    continue
                address = (
                    normalize_email(customer.email)
                    if channel == EMAIL
                    else normalize_phone(customer.mobile_phone)
                )
                if address is None:
                    counts.skipped_invalid_address += 1
                    continue
                if campaign.frequency_cap is not None and (
                    history.count(
                        customer_id, channel, campaign.lane, not_before, campaign.campaign_id
                    )
                    >= campaign.frequency_cap
                ):
                    counts.skipped_frequency_cap += 1
                    continue
                variables = template_variables(campaign, customer, contract, channel)
                if extra:
                    variables.update(extra)
                subject = (
                    render(subject_t, variables, "subject", customer_id)
                    if subject_t is not None and channel == EMAIL
                    else None
                )
                body = render(body_t, variables, "body", customer_id)
                is_held = holds and customer_id in held
                counts.held_outage += is_held
                counts.planned += not is_held
                messages.append(
                    PlannedMessage(
                        message_id=message_id(campaign.campaign_id, customer_id, channel),
                        recipient_id=customer_id,
                        channel=channel,
                        contract_id=contract.contract_id if contract else None,
                        address=address,
                        subject=subject,
                        body=body,
                        not_before_ms=not_before,
                        held=is_held,
                    )
                )
    return Plan(campaign, tuple(messages), counts)
