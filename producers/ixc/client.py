"""Typed async client of IXC Provedor's webservice (``POST <base>/webservice/v1/<form>``).

IXC has no push: everything is read by listing a form with HTTP Basic auth (``user:token``), the
header ``ixcsoft: listar`` and a JSON body of strings (qtype/query/oper, page/rp, sortname/
sortorder, optional grid_param). The answer is ``{"page", "total", "registros": [...]}`` with
every value a string.

The client is the only module that imports httpx. It spaces requests by
``min_request_interval_s`` (an IXC installation is the ISP's production ERP), retries 5xx, 429,
timeouts, connection errors and malformed answers with exponential backoff and jitter up to
``max_retries``, and never retries other 4xx (a wrong token stays wrong). The token is a
``SecretStr`` revealed only to httpx's auth object; nothing here logs headers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Literal, Self, TypeVar

import httpx

from filas.metrics import DEPENDENCY_SECONDS, timed
from filas.settings import IxcSettings
from producers.ixc.errors import (
    IxcError,
    IxcMalformedResponseError,
    IxcRequestRejectedError,
    IxcUnavailableError,
)

log = logging.getLogger(__name__)

IxcRecord = Mapping[str, str]
T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class GridFilter:
    """One extra AND filter of IXC's ``grid_param`` (``{"TB": column, "OP": oper, "P": value}``)."""

    column: str
    oper: str
    value: str


@dataclass(frozen=True, slots=True)
class IxcQuery:
    """What to list: IXC's single-column filter, its sort, and optional extra AND filters."""

    qtype: str
    query: str
    oper: str
    sortname: str
    sortorder: Literal["asc", "desc"] = "asc"
    grid: tuple[GridFilter, ...] = ()

    def body(self, page: int, rows: int) -> dict[str, str]:
        body = {
            "qtype": self.qtype,
            "query": self.query,
            "oper": self.oper,
            "page": str(page),
            "rp": str(rows),
            "sortname": self.sortname,
            "sortorder": self.sortorder,
        }
        if self.grid:
            body["grid_param"] = json.dumps(
                [{"TB": g.column, "OP": g.oper, "P": g.value} for g in self.grid]
            )
        return body


@dataclass(frozen=True, slots=True)
class IxcPage:
    """One page of a listing. ``total`` counts every record matching the query, on all pages."""

    form: str
    page: int
    rows: int
    total: int
    records: tuple[IxcRecord, ...] = field(default_factory=tuple)

    @property
    def is_last(self) -> bool:
        return len(self.records) < self.rows or self.page * self.rows >= self.total


class _Retry(Exception):
    """A failure worth another attempt; carries the error to raise when attempts run out."""

    def __init__(self, error: IxcError) -> None:
        super().__init__(str(error))
        self.error = error


def _as_record(raw: object, form: str) -> IxcRecord:
    if not isinstance(raw, dict):
        raise _Retry(IxcMalformedResponseError(f"{form}: a registro is not an object"))
    # IXC promises strings; a stray null or number becomes text so mapping sees one type.
    return MappingProxyType({str(k): _as_text(v) for k, v in raw.items()})


def _as_text(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _parse_page(form: str, page: int, rows: int, response: httpx.Response) -> IxcPage:
    try:
        payload: Any = response.json()
    except ValueError as exc:
        raise _Retry(
            IxcMalformedResponseError(f"{form}: answer is not JSON ({exc.__class__.__name__})")
        ) from exc
    if not isinstance(payload, dict):
        raise _Retry(IxcMalformedResponseError(f"{form}: answer is not a JSON object"))
    if payload.get("type") == "error":
        # IXC reports a bad qtype/permission as 200 + {"type": "error", "message": ...}.
        raise IxcRequestRejectedError(
            f"{form}: IXC refused the listing: {payload.get('message', '')!s:.200}",
            status=response.status_code,
        )
    try:
        total = int(payload.get("total", 0))
    except (TypeError, ValueError):
        raise _Retry(IxcMalformedResponseError(f"{form}: 'total' is not a number")) from None
    registros = payload.get("registros", [])
    if not isinstance(registros, list):
        raise _Retry(IxcMalformedResponseError(f"{form}: 'registros' is not a list"))
    records = tuple(_as_record(r, form) for r in registros)
    return IxcPage(form=form, page=page, rows=rows, total=total, records=records)


class IxcClient:
    """Lists IXC forms. Use as ``async with IxcClient(settings) as ixc:``.

    ``transport``, ``sleep`` and ``rng`` are injection points for tests (no real waiting).
    """

    def __init__(
        self,
        settings: IxcSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = asyncio.Lock()
        self._last_request_at: float | None = None
        self._http = httpx.AsyncClient(
            base_url=settings.base_url.rstrip("/") + "/webservice/v1/",
            auth=httpx.BasicAuth(settings.user, settings.token.get_secret_value()),
            timeout=httpx.Timeout(settings.request_timeout_s),
            verify=settings.verify_tls,
            transport=transport,
            headers={"Content-Type": "application/json"},
        )

    def __repr__(self) -> str:
        # Never the token: only where we talk to and as whom.
        return f"IxcClient(base_url={self._settings.base_url!r}, user={self._settings.user!r})"

    async def list_page(self, form: str, query: IxcQuery, *, page: int = 1) -> IxcPage:
        """One page of ``form`` (``rp`` = ``page_size``), retried as described in the module doc."""
        rows = self._settings.page_size
        body = query.body(page, rows)

        async def once() -> IxcPage:
            response = await self._post_once(form, body, action="listar")
            return _parse_page(form, page, rows, response)

        return await self._with_retries(form, once)

    async def list_all(self, form: str, query: IxcQuery) -> AsyncIterator[IxcPage]:
        """Every page of ``form`` by page number until ``total`` is reached.

        Offset paging: fine for small, slowly changing forms (plans); the poller uses keyset
        paging instead because offsets drift when records change during the listing.
        """
        page = 1
        while True:
            result = await self.list_page(form, query, page=page)
            yield result
            if result.is_last:
                return
            page += 1

    async def _with_retries(self, form: str, once: Callable[[], Awaitable[T]]) -> T:
        """Run ``once`` until it succeeds, a non-retriable error escapes, or retries run out."""
        retry = 0
        while True:
            try:
                return await once()
            except _Retry as failure:
                if retry >= self._settings.max_retries:
                    raise failure.error from failure.__cause__
                retry += 1
                limit = self._settings.max_retries
                log.warning("ixc %s: %s; retry %d/%d", form, failure.error, retry, limit)
                await self._sleep(self._backoff(retry - 1))

    async def _post_once(self, form: str, body: dict[str, str], *, action: str) -> httpx.Response:
        """One spaced-out POST. ``action`` is IXC's ``ixcsoft`` header: only ``listar`` is used
        today; write calls (e.g. ``desbloqueio_confianca``) will go through here too."""
        await self._space_out()
        try:
            with timed(DEPENDENCY_SECONDS, component="ixc-adapter", dependency="ixc"):
                response = await self._http.post(form, json=body, headers={"ixcsoft": action})
        except httpx.TransportError as exc:
            raise _Retry(
                IxcUnavailableError(
                    f"{form}: {exc.__class__.__name__} talking to IXC at {self._settings.base_url}"
                )
            ) from exc
        status = response.status_code
        if status >= 500 or status == 429:
            raise _Retry(IxcUnavailableError(f"{form}: IXC answered HTTP {status}"))
        if status >= 400:
            hint = " (check FILAS_IXC__USER / FILAS_IXC__TOKEN)" if status in (401, 403) else ""
            message = f"{form}: IXC answered HTTP {status}{hint}"
            raise IxcRequestRejectedError(message, status=status)
        return response

    def _backoff(self, retry: int) -> float:
        """Exponential backoff with equal jitter: never zero, never in lockstep with others."""
        cap = min(self._settings.backoff_max_s, self._settings.backoff_initial_s * 2.0**retry)
        return cap / 2 + self._rng.uniform(0, cap / 2)

    async def _space_out(self) -> None:
        async with self._lock:
            interval = self._settings.min_request_interval_s
            if self._last_request_at is not None and interval > 0:
                wait = self._last_request_at + interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            self._last_request_at = time.monotonic()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
