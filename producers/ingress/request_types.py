"""The request types clients may submit, their parameters and their priority lane.

One table drives both the validation (precise 400 bodies naming the field) and the OpenAPI
schema (``producers.ingress.openapi``), so the two cannot disagree. Parameters travel as strings
(``ServiceRequest.params`` is a map of strings).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from filas.catalog.requests import BULK, HIGH

ID_PATTERN = r"^[1-9][0-9]{0,17}$"
AMOUNT_PATTERN = r"^(0|[1-9][0-9]{0,8})(\.[0-9]{1,2})?$"
TEXT_PATTERN = r"\S"
# Compiled once: ``re.fullmatch(pattern, ...)`` looks the pattern up in re's cache per call.
_ID = re.compile(ID_PATTERN)
_AMOUNT = re.compile(AMOUNT_PATTERN)
# The fingerprint's canonical JSON; built once (``json.dumps`` with options builds an encoder
# per call). Same bytes as ``json.dumps(..., sort_keys=True, separators=(",", ":"))``.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


class InvalidRequest(ValueError):
    """Bad input: answered 400 with ``code`` and ``field``; nothing is enqueued."""

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter: ``kind`` is id (digits), amount (decimal > 0, 2 places), text or choice."""

    name: str
    kind: str
    required: bool = True
    max_length: int = 0
    choices: tuple[str, ...] = ()
    description: str = ""

    @property
    def where(self) -> str:
        return f"params.{self.name}"

    def validate(self, value: object, where: str) -> str:
        if not isinstance(value, str):
            raise InvalidRequest("wrong_type", f"{where} must be a string", field=where)
        if self.kind == "id":
            if _ID.fullmatch(value) is None:
                raise InvalidRequest(
                    "invalid_id",
                    f"{where} must be an IXC id (1 to 18 digits, no leading zero)",
                    field=where,
                )
        elif self.kind == "amount":
            if _AMOUNT.fullmatch(value) is None:
                raise InvalidRequest(
                    "invalid_amount",
                    f"{where} must be a decimal like '89.90' (2 places at most)",
                    field=where,
                )
            if Decimal(value) <= 0:
                raise InvalidRequest("invalid_amount", f"{where} must be > 0", field=where)
        elif self.kind == "choice":
            if value not in self.choices:
                raise InvalidRequest(
                    "invalid_choice",
                    f"{where} must be one of {', '.join(self.choices)}",
                    field=where,
                )
        else:
            if not value.strip():
                raise InvalidRequest("empty", f"{where} must not be blank", field=where)
            if len(value) > self.max_length:
                raise InvalidRequest(
                    "too_long", f"{where} is longer than {self.max_length} characters", field=where
                )
        return value

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string", "description": self.description}
        if self.kind == "id":
            schema["pattern"] = ID_PATTERN
        elif self.kind == "amount":
            schema["pattern"] = AMOUNT_PATTERN
        elif self.kind == "choice":
            schema["enum"] = list(self.choices)
        else:
            schema.update(minLength=1, maxLength=self.max_length, pattern=TEXT_PATTERN)
        return schema


@dataclass(frozen=True, slots=True)
class RequestKind:
    """A request type: its API name, its ``RequestType`` symbol, lane and parameters."""

    name: str
    symbol: str
    lane: str
    summary: str
    params: tuple[Param, ...] = field(default_factory=tuple)
    names: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", frozenset(p.name for p in self.params))

    def validate(self, raw: object) -> dict[str, str]:
        if not isinstance(raw, dict):
            raise InvalidRequest("wrong_type", "params must be an object", field="params")
        known = self.names
        if not raw.keys() <= known:
            unknown = sorted(set(raw) - known)
            raise InvalidRequest(
                "unknown_field",
                f"params.{unknown[0]} is not a parameter of {self.name} "
                f"(expected: {', '.join(sorted(known))})",
                field=f"params.{unknown[0]}",
            )
        out: dict[str, str] = {}
        for param in self.params:
            value = raw.get(param.name, _ABSENT)
            if value is _ABSENT:
                if param.required:
                    where = f"params.{param.name}"
                    raise InvalidRequest("missing", f"{where} is required", field=where)
                continue
            out[param.name] = param.validate(value, param.where)
        return out


CONTRACT = Param("contract_id", "id", description="IXC cliente_contrato.id")
KINDS: tuple[RequestKind, ...] = (
    RequestKind(
        "payment_confirmation",
        "PAYMENT_CONFIRMATION",
        HIGH,
        "An invoice was paid (PIX/boleto/card): IXC settles it and unblocks the contract.",
        (
            CONTRACT,
            Param("amount", "amount", description="Amount paid, BRL, e.g. '89.90'"),
            Param("method", "choice", choices=("pix", "boleto", "card"), description="How"),
            Param("invoice_id", "id", required=False, description="IXC fn_areceber.id"),
            Param(
                "payment_id",
                "text",
                required=False,
                max_length=64,
                description="The payment gateway's own id of the payment",
            ),
        ),
    ),
    RequestKind(
        "trust_unblock",
        "TRUST_UNBLOCK",
        HIGH,
        "Trust unblock (desbloqueio de confiança) of a contract blocked for non-payment.",
        (CONTRACT,),
    ),
    RequestKind(
        "disconnect_login",
        "DISCONNECT_LOGIN",
        HIGH,
        "Drop a login's RADIUS session (it reconnects with its current policy).",
        (Param("login_id", "id", description="IXC radusuarios.id"),),
    ),
    RequestKind(
        "change_plan",
        "CHANGE_PLAN",
        HIGH,
        "Move a contract (and its logins) to another plan.",
        (CONTRACT, Param("plan_id", "id", description="IXC radgrupos.id of the new plan")),
    ),
    RequestKind(
        "open_ticket",
        "OPEN_TICKET",
        HIGH,
        "Open a support ticket or a service order for a customer.",
        (
            Param("customer_id", "id", description="IXC cliente.id"),
            Param("subject", "text", max_length=200, description="Short subject"),
            Param("message", "text", max_length=4000, description="What happened"),
            Param("contract_id", "id", required=False, description="IXC cliente_contrato.id"),
            Param(
                "kind",
                "choice",
                required=False,
                choices=("ticket", "service_order"),
                description="Ticket (default) or service order",
            ),
        ),
    ),
    RequestKind(
        "resend_invoice",
        "RESEND_INVOICE",
        BULK,
        "Send an invoice (boleto/PIX code) to the customer again.",
        (
            CONTRACT,
            Param("invoice_id", "id", required=False, description="IXC fn_areceber.id"),
            Param(
                "channel",
                "choice",
                required=False,
                choices=("email", "sms"),
                description="Where to send it (default email)",
            ),
        ),
    ),
)
BY_NAME: Mapping[str, RequestKind] = {k.name: k for k in KINDS}
BY_SYMBOL: Mapping[str, RequestKind] = {k.symbol: k for k in KINDS}
LANE_NAMES = (HIGH, BULK)


_ABSENT = object()
_SUBMISSION_FIELDS = frozenset({"type", "params", "lane"})


def fingerprint(kind: RequestKind, lane: str, params: Mapping[str, str]) -> str:
    """SHA-256 of the canonical body: same type, lane and params -> same fingerprint."""
    canonical = _CANONICAL.encode({"type": kind.name, "lane": lane, "params": params})
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ValidRequest:
    """A validated request; ``fingerprint`` (computed once) identifies its body."""

    kind: RequestKind
    params: dict[str, str]
    lane: str
    fingerprint: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", fingerprint(self.kind, self.lane, self.params))


def parse_submission(body: object) -> ValidRequest:
    """``{"type": ..., "params": {...}, "lane"?: "bulk"}`` -> ValidRequest or InvalidRequest.

    ``lane`` may only demote a request to the bulk lane (a script resending a whole month of
    plan changes), never promote it.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("wrong_type", "the body must be a JSON object")
    if not body.keys() <= _SUBMISSION_FIELDS:
        unknown = sorted(set(body) - _SUBMISSION_FIELDS)
        raise InvalidRequest(
            "unknown_field", f"{unknown[0]} is not a field of a request", field=unknown[0]
        )
    name = body.get("type")
    if name is None:
        raise InvalidRequest("missing", "type is required", field="type")
    if not isinstance(name, str) or name not in BY_NAME:
        raise InvalidRequest(
            "unknown_type", f"type must be one of {', '.join(BY_NAME)}", field="type"
        )
    kind = BY_NAME[name]
    params = kind.validate(body.get("params", {}))
    lane = body.get("lane", kind.lane)
    if lane not in LANE_NAMES:
        raise InvalidRequest("invalid_choice", "lane must be high or bulk", field="lane")
    if kind.lane == BULK and lane == HIGH:
        raise InvalidRequest(
            "lane_not_allowed", f"{name} requests run on the bulk lane only", field="lane"
        )
    return ValidRequest(kind, params, str(lane))


WEBHOOK_KIND = BY_NAME["payment_confirmation"]


def parse_payment_webhook(body: object) -> ValidRequest:
    """A payment gateway's webhook body: payment_confirmation's params, payment_id required."""
    if not isinstance(body, dict):
        raise InvalidRequest("wrong_type", "the body must be a JSON object")
    if "payment_id" not in body:
        raise InvalidRequest("missing", "payment_id is required", field="payment_id")
    try:
        params = WEBHOOK_KIND.validate(body)
    except InvalidRequest as exc:
        bare = exc.field.removeprefix("params.") if exc.field else None
        raise InvalidRequest(exc.code, exc.message.replace("params.", ""), field=bare) from None
    return ValidRequest(WEBHOOK_KIND, params, WEBHOOK_KIND.lane)
