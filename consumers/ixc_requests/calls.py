"""One service request -> one IXC write call, and the client that makes it.

``ixc_call`` is pure: the request type picks IXC's form and the body (strings, like every IXC
field). Every body carries ``filas_request_id`` so an IXC that deduplicates on it (the
homologation simulator does) applies a retried call once (docs/decisions/0082).

``IxcWriter`` is the poller's ``IxcClient`` (same auth, spacing, timeouts and error mapping)
with a single-attempt write: the worker owns retries, so it can count attempts, publish them
in the status and pass every attempt through its own rate cap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from filas.errors import FilasError
from producers.ixc.client import IxcClient, _Retry
from producers.ixc.errors import IxcMalformedResponseError

# IXC's write forms; (chosen) = not confirmed from an IXC source (docs/requests.md).
TRUST_UNBLOCK_FORM = "desbloqueio_confianca"
PAYMENT_FORM = "fn_areceber_baixa"  # (chosen)
TICKET_FORM = "su_oss_chamado"
DISCONNECT_FORM = "desconectar_clientes"  # (chosen)
CHANGE_PLAN_FORM = "cliente_contrato_alterar_plano"  # (chosen)
RESEND_INVOICE_FORM = "fn_areceber_reenviar"  # (chosen)
# Carried in every write body: an IXC that deduplicates on it applies a retried call once.
REQUEST_ID_FIELD = "filas_request_id"  # (chosen)


class IxcRefusal(FilasError):
    """IXC refused the request for a business reason (e.g. CONTRATO_NAO_BLOQUEADO): permanent,
    reported as FAILED with IXC's code; retrying cannot help."""

    code = "ixc_refused"
    retriable = False

    def __init__(self, ixc_code: str, message: str) -> None:
        super().__init__(f"IXC refused: [{ixc_code}] {message}")
        self.ixc_code = ixc_code
        self.ixc_message = message


class UnsupportedRequest(FilasError):
    """A request this worker version cannot map to an IXC call (a newer ingress?)."""

    code = "unsupported_request"
    retriable = False


@dataclass(frozen=True, slots=True)
class IxcCall:
    form: str
    body: dict[str, str]


def _opt(params: Mapping[str, str], name: str) -> str:
    return params.get(name, "")


def ixc_call(request: Mapping[str, Any]) -> IxcCall:
    """The IXC write for a ``ServiceRequest`` record."""
    kind = str(request["request_type"])
    p: Mapping[str, str] = request.get("params") or {}
    rid = {REQUEST_ID_FIELD: str(request["request_id"])}
    try:
        if kind == "TRUST_UNBLOCK":
            return IxcCall(TRUST_UNBLOCK_FORM, {"id": p["contract_id"], **rid})
        if kind == "PAYMENT_CONFIRMATION":
            body = {
                "id_contrato": p["contract_id"],
                "valor": p["amount"],
                "forma": p["method"],
                "id_areceber": _opt(p, "invoice_id"),
            }
            return IxcCall(PAYMENT_FORM, {**body, **rid})
        if kind == "OPEN_TICKET":
            body = {
                "id_cliente": p["customer_id"],
                "id_contrato": _opt(p, "contract_id"),
                "assunto": p["subject"],
                "mensagem": p["message"],
                # IXC: C = chamado (ticket), O = ordem de serviço.
                "tipo": "O" if p.get("kind") == "service_order" else "C",
            }
            return IxcCall(TICKET_FORM, {**body, **rid})
        if kind == "DISCONNECT_LOGIN":
            return IxcCall(DISCONNECT_FORM, {"id": p["login_id"], **rid})
        if kind == "CHANGE_PLAN":
            body = {"id_contrato": p["contract_id"], "id_plano": p["plan_id"]}
            return IxcCall(CHANGE_PLAN_FORM, {**body, **rid})
        if kind == "RESEND_INVOICE":
            body = {
                "id_contrato": p["contract_id"],
                "id_areceber": _opt(p, "invoice_id"),
                "canal": p.get("channel", "email"),
            }
            return IxcCall(RESEND_INVOICE_FORM, {**body, **rid})
    except KeyError as exc:
        raise UnsupportedRequest(f"{kind}: parameter {exc.args[0]!r} missing") from None
    raise UnsupportedRequest(f"request type {kind!r} has no IXC call")


class IxcWriter(IxcClient):
    """``IxcClient`` plus ``write_once``."""

    async def write_once(self, call: IxcCall) -> dict[str, str]:
        """One POST (no ``ixcsoft`` header: IXC's insert). Returns IXC's success answer; raises
        ``IxcRefusal`` (business), ``IxcUnavailableError``/``IxcMalformedResponseError``
        (retriable) or ``IxcRequestRejectedError`` (4xx: configuration)."""
        try:
            response = await self._post_once(call.form, call.body, action="")
        except _Retry as failure:
            raise failure.error from failure.__cause__
        try:
            payload: Any = response.json()
        except ValueError as exc:
            raise IxcMalformedResponseError(f"{call.form}: answer is not JSON") from exc
        if not isinstance(payload, dict):
            raise IxcMalformedResponseError(f"{call.form}: answer is not a JSON object")
        if payload.get("type") == "error":
            raise IxcRefusal(
                str(payload.get("code") or "IXC_ERROR"), str(payload.get("message", ""))[:500]
            )
        if payload.get("type") != "success":
            raise IxcMalformedResponseError(f"{call.form}: answer has no type success/error")
        return {str(k): str(v) for k, v in payload.items() if v is not None}
