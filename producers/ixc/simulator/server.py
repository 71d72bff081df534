"""SIMULATOR: an aiohttp server speaking IXC's webservice dialect over a ``SimulatedIsp``.

``POST /webservice/v1/<form>`` with Basic auth (``user:token``) and ``ixcsoft: listar`` lists
records like IXC (see ``listing``). Without an ``ixcsoft`` header (IXC's insert) the write forms
of ``writes`` (trust unblock, payment, ticket, disconnect, plan change, invoice resend) apply to
the data; other forms and actions answer 501 until registered with ``register_action``.
Faults from the ``FaultPlan`` apply to webservice requests only, never to the admin API.

Admin API (homologation tests and humans), all JSON:

- ``GET  /_sim/health``                      -> ``{"ok": true, "seed": ...}``
- ``GET  /_sim/stats``                        -> requests per form and faults injected
- ``GET  /_sim/records/{form}/{id}``          -> one record
- ``POST /_sim/records/{form}/{id}``          body: fields to change; bumps ultima_atualizacao
- ``POST /_sim/records/{form}``               body: a new record; returns it with its id
- ``POST /_sim/contracts/{id}/block``         body: ``{"code": "CA"|"CM"|"FA"}``
- ``POST /_sim/contracts/{id}/unblock``       body: ``{"trust": bool}``
- ``PUT  /_sim/faults``                       body: ``{"script": [...], "error_rate": ...,
  "slow_rate": ..., "malformed_rate": ..., "slow_s": ..., "seed": ...}``
- ``DELETE /_sim/faults``                     -> no more faults
- ``GET  /_sim/writes``                       -> write calls and applied effects per request id
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from producers.ixc.simulator.dataset import SimulatedIsp
from producers.ixc.simulator.faults import Fault, FaultPlan
from producers.ixc.simulator.listing import ListingError, list_records
from producers.ixc.simulator.writes import WriteApi

ActionHandler = Callable[[str, Mapping[str, Any]], Awaitable[web.Response]]


def _error(status: int, message: str) -> web.Response:
    # IXC's own error shape, so clients exercise the same parsing path.
    return web.json_response({"type": "error", "message": message}, status=status)


class IxcSimulator:
    """The simulator's in-process API: ``await sim.start()`` returns the base URL to give the
    adapter as ``IxcSettings.base_url``; mutate ``sim.isp`` or set ``sim.faults`` directly."""

    def __init__(
        self,
        isp: SimulatedIsp,
        *,
        token: str,
        user: str = "1",
        faults: FaultPlan | None = None,
    ) -> None:
        self.isp = isp
        self.user = user
        self._token = token
        self.faults = faults or FaultPlan()
        self.requests: Counter[str] = Counter()
        self.writes = WriteApi(isp)
        self._actions: dict[str, ActionHandler] = {"listar": self._list, "": self._write}
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def register_action(self, name: str, handler: ActionHandler) -> None:
        """Serve another ``ixcsoft`` action (future write calls)."""
        self._actions[name] = handler

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/webservice/v1/{form}", self._webservice)
        app.router.add_get("/_sim/health", self._health)
        app.router.add_get("/_sim/stats", self._stats)
        app.router.add_get("/_sim/records/{form}/{id}", self._get_record)
        app.router.add_post("/_sim/records/{form}/{id}", self._update_record)
        app.router.add_post("/_sim/records/{form}", self._insert_record)
        app.router.add_post("/_sim/contracts/{id}/block", self._block)
        app.router.add_post("/_sim/contracts/{id}/unblock", self._unblock)
        app.router.add_put("/_sim/faults", self._set_faults)
        app.router.add_delete("/_sim/faults", self._clear_faults)
        app.router.add_get("/_sim/writes", self._writes)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen (port 0 picks a free port) and return the base URL."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = int(self._runner.addresses[0][1])
        self.base_url = f"http://{host}:{bound}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- webservice ------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        expected = f"{self.user}:{self._token}"
        return hmac.compare_digest(decoded.encode(), expected.encode())

    async def _webservice(self, request: web.Request) -> web.StreamResponse:
        form = request.match_info["form"]
        if not self._authorized(request):
            return _error(401, "Usuário ou token inválido")
        action = request.headers.get("ixcsoft", "")
        handler = self._actions.get(action)
        if handler is None or (action == "" and not self.writes.handles(form)):
            return _error(501, f"simulator: action {action or '(insert)'!r} not implemented")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "corpo da requisição não é JSON")
        if not isinstance(body, dict):
            return _error(400, "corpo da requisição deve ser um objeto")
        self.requests[form] += 1
        fault = self.faults.next()
        if fault is Fault.ERROR_500:
            return web.Response(status=500, text="Internal Server Error (simulated)")
        if fault is Fault.SLOW:
            await asyncio.sleep(self.faults.slow_s)
        if fault is Fault.MALFORMED:
            return web.Response(
                status=200, text="<html>Erro fatal</html>{", content_type="text/html"
            )
        return await handler(form, body)

    async def _list(self, form: str, body: Mapping[str, Any]) -> web.Response:
        if form not in self.isp.forms:
            return _error(404, f"formulário {form!r} não existe")
        try:
            total, page = list_records(
                form, self.isp.records(form), {k: str(v) for k, v in body.items()}
            )
        except ListingError as exc:
            return web.json_response({"type": "error", "message": str(exc)})
        # IXC answers strings everywhere, including page and total.
        return web.json_response(
            {"page": str(body.get("page", "1")), "total": str(total), "registros": page}
        )

    async def _write(self, form: str, body: Mapping[str, Any]) -> web.Response:
        return web.json_response(self.writes.apply(form, body))

    # -- admin -----------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "seed": self.isp.seed, "simulator": True})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"requests": dict(self.requests), "faults": [f.value for f in self.faults.injected]}
        )

    def _record_or_404(self, form: str, record_id: str) -> dict[str, str]:
        try:
            return self.isp.get(form, record_id)
        except KeyError:
            raise web.HTTPNotFound(text=f"no {form} {record_id}") from None

    async def _get_record(self, request: web.Request) -> web.Response:
        info = request.match_info
        return web.json_response(self._record_or_404(info["form"], info["id"]))

    async def _update_record(self, request: web.Request) -> web.Response:
        info = request.match_info
        self._record_or_404(info["form"], info["id"])
        changes = await request.json()
        return web.json_response(self.isp.update(info["form"], info["id"], changes))

    async def _insert_record(self, request: web.Request) -> web.Response:
        form = request.match_info["form"]
        if form not in self.isp.forms:
            raise web.HTTPNotFound(text=f"no form {form}")
        return web.json_response(self.isp.insert(form, await request.json()), status=201)

    async def _block(self, request: web.Request) -> web.Response:
        contract_id = request.match_info["id"]
        self._record_or_404("cliente_contrato", contract_id)
        body = await request.json() if request.can_read_body else {}
        code = str(body.get("code", "CA"))
        if code not in ("CA", "CM", "FA"):
            raise web.HTTPBadRequest(text="code must be CA, CM or FA")
        return web.json_response(self.isp.block_contract(contract_id, code))

    async def _unblock(self, request: web.Request) -> web.Response:
        contract_id = request.match_info["id"]
        self._record_or_404("cliente_contrato", contract_id)
        body = await request.json() if request.can_read_body else {}
        trust = bool(body.get("trust", False))
        return web.json_response(self.isp.unblock_contract(contract_id, trust=trust))

    async def _writes(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"calls": dict(self.writes.calls), "effects": dict(self.writes.effects)}
        )

    async def _set_faults(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            self.faults = FaultPlan(
                script=body.get("script", ()),
                error_rate=float(body.get("error_rate", 0.0)),
                slow_rate=float(body.get("slow_rate", 0.0)),
                malformed_rate=float(body.get("malformed_rate", 0.0)),
                slow_s=float(body.get("slow_s", 5.0)),
                seed=int(body.get("seed", 0)),
            )
        except (TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from exc
        return web.json_response({"ok": True})

    async def _clear_faults(self, request: web.Request) -> web.Response:
        self.faults = FaultPlan()
        return web.json_response({"ok": True})
