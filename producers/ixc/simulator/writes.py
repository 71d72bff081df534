"""SIMULATOR: IXC's write calls used by the service-request workers, with their refusals.

``POST /webservice/v1/<form>`` without an ``ixcsoft`` header (IXC's insert) on one of the forms
below changes the ``SimulatedIsp`` the way IXC would, so the poller reads the effect on its next
pass (a trust unblock flips ``status_internet`` and bumps ``ultima_atualizacao`` -> the poller
emits ContractStatusChanged -> the CoA worker restores the session).

Answers follow IXC's shape: ``{"type": "success", "message", "id"}`` or a business refusal
``{"type": "error", "message", "code"}`` with HTTP 200 (IXC reports refusals in the body).
Form names and refusal codes marked (chosen) were not confirmed from an IXC source.

Idempotency (simulator-only): a body carrying ``filas_request_id`` (chosen) is applied once;
a repeated call with the same id gets the first answer back and changes nothing. ``calls``
counts calls and ``effects`` counts applied changes per request id, for tests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

# The forms the workers call (one definition, so the simulator cannot drift from them).
from consumers.ixc_requests.calls import (
    CHANGE_PLAN_FORM,
    DISCONNECT_FORM,
    PAYMENT_FORM,
    REQUEST_ID_FIELD,
    RESEND_INVOICE_FORM,
    TICKET_FORM,
    TRUST_UNBLOCK_FORM,
)
from producers.ixc.simulator.dataset import SimulatedIsp

Answer = dict[str, str]
BLOCKED_CODES = ("CA", "CM", "FA")
PAYMENTS_TABLE = "fn_areceber_pagamentos"  # (chosen) where settled payments are kept
RESENDS_TABLE = "fn_areceber_envios"  # (chosen)


class Refusal(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _text(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None or str(value).strip() == "":
        raise Refusal("CAMPO_OBRIGATORIO", f"campo {name!r} é obrigatório")
    return str(value)


class WriteApi:
    """The write forms over one ``SimulatedIsp``; ``handle`` is the webservice action handler."""

    def __init__(self, isp: SimulatedIsp) -> None:
        self.isp = isp
        self.answers: dict[str, Answer] = {}
        self.calls: Counter[str] = Counter()
        self.effects: Counter[str] = Counter()
        self._forms: dict[str, Callable[[Mapping[str, Any]], Answer]] = {
            TRUST_UNBLOCK_FORM: self._trust_unblock,
            PAYMENT_FORM: self._payment,
            TICKET_FORM: self._ticket,
            DISCONNECT_FORM: self._disconnect,
            CHANGE_PLAN_FORM: self._change_plan,
            RESEND_INVOICE_FORM: self._resend_invoice,
        }
        for table in (TICKET_FORM, PAYMENTS_TABLE, RESENDS_TABLE):
            isp.forms.setdefault(table, {})

    def handles(self, form: str) -> bool:
        return form in self._forms

    def apply(self, form: str, body: Mapping[str, Any]) -> Answer:
        """Apply one write (once per ``filas_request_id``) and return IXC's answer."""
        request_id = str(body.get(REQUEST_ID_FIELD) or "")
        if request_id:
            self.calls[request_id] += 1
            first = self.answers.get(request_id)
            if first is not None:
                return first
        try:
            answer = self._forms[form](body)
        except Refusal as refusal:
            answer = {"type": "error", "message": refusal.message, "code": refusal.code}
        else:
            if request_id:
                self.effects[request_id] += 1
        if request_id:
            self.answers[request_id] = answer
        return answer

    # -- forms -----------------------------------------------------------------------------

    def _contract(self, contract_id: str) -> dict[str, str]:
        try:
            return self.isp.get("cliente_contrato", contract_id)
        except KeyError:
            raise Refusal("CONTRATO_NAO_ENCONTRADO", f"contrato {contract_id} não existe") from None

    def _trust_unblock(self, body: Mapping[str, Any]) -> Answer:
        contract_id = _text(body, "id")
        contract = self._contract(contract_id)
        if contract["status_internet"] not in BLOCKED_CODES:
            raise Refusal("CONTRATO_NAO_BLOQUEADO", "contrato não está bloqueado")
        if contract.get("desbloqueio_confianca_ativo") == "S":
            raise Refusal("DESBLOQUEIO_JA_UTILIZADO", "desbloqueio de confiança já utilizado")
        self.isp.unblock_contract(contract_id, trust=True)
        return {"type": "success", "message": "Desbloqueio realizado", "id": contract_id}

    def _payment(self, body: Mapping[str, Any]) -> Answer:
        contract_id = _text(body, "id_contrato")
        contract = self._contract(contract_id)
        stored = self.isp.insert(
            PAYMENTS_TABLE,
            {
                "id_contrato": contract_id,
                "id_areceber": str(body.get("id_areceber") or ""),
                "valor": _text(body, "valor"),
                "forma": str(body.get("forma") or ""),
            },
        )
        # Automatic (billing) blocks lift on payment; a manual block (CM) stays.
        if contract["status_internet"] in ("CA", "FA"):
            self.isp.unblock_contract(contract_id)
        return {"type": "success", "message": "Baixa registrada", "id": stored["id"]}

    def _ticket(self, body: Mapping[str, Any]) -> Answer:
        customer_id = _text(body, "id_cliente")
        if customer_id not in self.isp.forms["cliente"]:
            raise Refusal("CLIENTE_NAO_ENCONTRADO", f"cliente {customer_id} não existe")
        contract_id = str(body.get("id_contrato") or "")
        if contract_id:
            self._contract(contract_id)
        stored = self.isp.insert(
            TICKET_FORM,
            {
                "id_cliente": customer_id,
                "id_contrato": contract_id,
                "assunto": _text(body, "assunto"),
                "mensagem": _text(body, "mensagem"),
                "tipo": str(body.get("tipo") or "C"),
                "status": "A",
            },
        )
        return {"type": "success", "message": "Chamado aberto", "id": stored["id"]}

    def _disconnect(self, body: Mapping[str, Any]) -> Answer:
        login_id = _text(body, "id")
        if login_id not in self.isp.forms["radusuarios"]:
            raise Refusal("LOGIN_NAO_ENCONTRADO", f"login {login_id} não existe")
        self.isp.update("radusuarios", login_id, {"online": "N"})
        return {"type": "success", "message": "Login desconectado", "id": login_id}

    def _change_plan(self, body: Mapping[str, Any]) -> Answer:
        contract_id = _text(body, "id_contrato")
        plan_id = _text(body, "id_plano")
        contract = self._contract(contract_id)
        plan = self.isp.forms["radgrupos"].get(plan_id)
        if plan is None:
            raise Refusal("PLANO_NAO_ENCONTRADO", f"plano {plan_id} não existe")
        if contract["id_vd_contrato"] == plan_id:
            raise Refusal("PLANO_IGUAL", "o contrato já está neste plano")
        self.isp.update(
            "cliente_contrato",
            contract_id,
            {"id_vd_contrato": plan_id, "contrato": plan["grupo"].replace("_", " ")},
        )
        logins = [
            i for i, r in self.isp.forms["radusuarios"].items() if r["id_contrato"] == contract_id
        ]
        if logins:
            self.isp.touch("radusuarios", logins, {"id_grupo": plan_id})
        return {"type": "success", "message": "Plano alterado", "id": contract_id}

    def _resend_invoice(self, body: Mapping[str, Any]) -> Answer:
        contract_id = _text(body, "id_contrato")
        self._contract(contract_id)
        stored = self.isp.insert(
            RESENDS_TABLE,
            {
                "id_contrato": contract_id,
                "id_areceber": str(body.get("id_areceber") or ""),
                "canal": str(body.get("canal") or "email"),
            },
        )
        return {"type": "success", "message": "Boleto reenviado", "id": stored["id"]}
