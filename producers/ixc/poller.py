"""The IXC poller: lists each form's changed records and emits them as events, at least once.

Keyset paging on ``(ultima_atualizacao, id)`` instead of IXC's page numbers: a record updated
while we list moves to the end of the ``ultima_atualizacao`` order, which shifts every later
offset and would make page-number paging skip a record. Each request therefore asks for the
first page after the watermark, in two phases:

1. drain the watermark's timestamp: ``ultima_atualizacao = T`` and ``id > last_id``, sorted by
   id (one timestamp can hold thousands of records after a bulk update in IXC);
2. move on: ``ultima_atualizacao > T`` sorted by it. On a full page the newest timestamp may
   continue on the next page, so only the records older than it are taken; phase 1 then drains
   it by id.

After each page's events are acknowledged by the sink (and malformed records acknowledged by
the dead-letter sink), the watermark and contract snapshots are saved. A failure before that
leaves the watermark where it was: the page is re-listed and re-emitted next time, harmless on
compacted topics keyed by IXC id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from filas.metrics import DEAD_LETTERS, ERRORS, EVENTS_OUT, PROCESSING_SECONDS
from producers.ixc import mapping
from producers.ixc.client import GridFilter, IxcClient, IxcQuery, IxcRecord
from producers.ixc.contract_status import ContractSnapshot
from producers.ixc.errors import IxcError, IxcMappingError, IxcProtocolError
from producers.ixc.forms import FORMS, PLANS_FORM, FormSpec
from producers.ixc.mapping import Event, MappingContext, Plan
from producers.ixc.ports import DeadLetter, DeadLetterSink, EventSink
from producers.ixc.watermark import FormWatermark, PollerState, WatermarkStore

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


COMPONENT = "ixc-adapter"


@dataclass(slots=True)
class FormReport:
    form: str
    requests: int = 0
    emitted: int = 0
    dead_lettered: int = 0
    status_changes: int = 0


@dataclass(slots=True)
class PollReport:
    forms: dict[str, FormReport] = field(default_factory=dict)

    @property
    def emitted(self) -> int:
        return sum(f.emitted for f in self.forms.values())

    @property
    def dead_lettered(self) -> int:
        return sum(f.dead_lettered for f in self.forms.values())


def _record_id(record: IxcRecord) -> int:
    value = record.get("id", "")
    return int(value) if value.isdigit() else 0


class IxcPoller:
    """Polls ``forms`` in order through ``client`` into ``sink``; see the module doc.

    ``tz`` is the IXC installation's time zone: IXC writes local times, not UTC.
    """

    def __init__(
        self,
        client: IxcClient,
        sink: EventSink,
        dead_letters: DeadLetterSink,
        store: WatermarkStore,
        *,
        tz: ZoneInfo,
        forms: Sequence[FormSpec] = FORMS,
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._sink = sink
        self._dead_letters = dead_letters
        self._store = store
        self._tz = tz
        self._forms = tuple(forms)
        self._clock = clock

    async def poll_once(self) -> PollReport:
        """One pass over every form. Raises the client's error when IXC stays unreachable; the
        watermark then holds every page that was acknowledged before the failure."""
        state = self._store.load()
        report = PollReport()
        plans: Mapping[str, Plan] = {}
        for spec in self._forms:
            form_report = report.forms.setdefault(spec.form, FormReport(spec.form))
            if spec.needs_plans:
                plans = await self._load_plans(spec, form_report)
            await self._poll_form(spec, state, plans, form_report)
        return report

    async def run(self, interval_s: float, stop: asyncio.Event | None = None) -> None:
        """Poll every ``interval_s`` until ``stop`` is set. Retriable errors (IXC down) are
        logged and retried next round; others (wrong token, corrupt state) end the loop."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            started = time.perf_counter()
            try:
                report = await self.poll_once()
                PROCESSING_SECONDS.labels(COMPONENT, "poll").observe(time.perf_counter() - started)
                for form in report.forms.values():
                    EVENTS_OUT.labels(COMPONENT, form.form).inc(form.emitted)
                    DEAD_LETTERS.labels(COMPONENT, form.form).inc(form.dead_lettered)
                log.info(
                    "ixc poll: %d emitted, %d dead-lettered", report.emitted, report.dead_lettered
                )
            except IxcError as exc:
                ERRORS.labels(COMPONENT, exc.code).inc()
                if not exc.retriable:
                    raise
                log.warning(
                    "ixc poll failed, retrying in %.0fs: [%s] %s", interval_s, exc.code, exc
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)

    async def _load_plans(self, spec: FormSpec, report: FormReport) -> dict[str, Plan]:
        """The whole RADIUS group table (small, changes rarely) to resolve login speeds."""
        plans: dict[str, Plan] = {}
        query = IxcQuery(f"{PLANS_FORM}.id", "0", ">", f"{PLANS_FORM}.id")
        async for page in self._client.list_all(PLANS_FORM, query):
            report.requests += 1
            for record in page.records:
                try:
                    plan = mapping.plan_from_record(record)
                except IxcMappingError as exc:
                    await self._dead_letter(replace(spec, form=PLANS_FORM), exc, record, report)
                    continue
                plans[plan.plan_id] = plan
        return plans

    async def _poll_form(
        self,
        spec: FormSpec,
        state: PollerState,
        plans: Mapping[str, Plan],
        report: FormReport,
    ) -> None:
        updated, record_id = spec.column(spec.updated_column), spec.column("id")
        mark = state.mark(spec.form)
        drained = False
        while True:
            if not drained:
                # Phase 1: the rest of the watermark's timestamp, by id.
                query = IxcQuery(
                    updated, mark.updated, "=", record_id,
                    grid=(GridFilter(record_id, ">", str(mark.last_id)),),
                )  # fmt: skip
                page = await self._client.list_page(spec.form, query)
                report.requests += 1
                if page.records:
                    last = max(_record_id(r) for r in page.records)
                    if last <= mark.last_id:
                        # IXC ignored grid_param: the same page would come back forever.
                        raise IxcProtocolError(
                            f"{spec.form}: IXC returned ids <= {mark.last_id} for id > "
                            f"{mark.last_id}; grid_param unsupported?"
                        )
                    await self._emit_page(spec, page.records, state, plans, report)
                    mark = FormWatermark(mark.updated, max(mark.last_id, last))
                    self._commit(state, spec, mark)
                    if not page.is_last:
                        continue
                drained = True
            # Phase 2: newer timestamps.
            page = await self._client.list_page(
                spec.form, IxcQuery(updated, mark.updated, ">", updated)
            )
            report.requests += 1
            if not page.records:
                return
            stamps = [r.get(spec.updated_column, "") for r in page.records]
            if min(stamps) <= mark.updated:
                # Taking these would move the watermark backwards and re-list them forever.
                raise IxcProtocolError(
                    f"{spec.form}: IXC returned {spec.updated_column} <= {mark.updated!r} "
                    f"for a '>' query"
                )
            newest = max(stamps)
            if page.is_last:
                taken = list(page.records)
            else:
                # The newest timestamp may go on past this page: leave it to phase 1.
                taken = [r for r, ts in zip(page.records, stamps, strict=True) if ts < newest]
            if taken:
                await self._emit_page(spec, taken, state, plans, report)
                top = max(r.get(spec.updated_column, "") for r in taken)
                last = max(_record_id(r) for r in taken if r.get(spec.updated_column, "") == top)
                mark = FormWatermark(top, last)
                self._commit(state, spec, mark)
                # Every record at ``top`` was on this page (older than ``newest``, or the
                # listing ended), so there is nothing left to drain at the new watermark.
                drained = True
            else:
                mark = FormWatermark(newest, 0)
                drained = False

    def _commit(self, state: PollerState, spec: FormSpec, mark: FormWatermark) -> None:
        state.forms[spec.form] = mark
        self._store.save(state)

    async def _emit_page(
        self,
        spec: FormSpec,
        records: Sequence[IxcRecord],
        state: PollerState,
        plans: Mapping[str, Plan],
        report: FormReport,
    ) -> None:
        """Map and emit one page; returns only when every event and dead letter is acknowledged.

        Contract snapshots are staged and merged into ``state`` only after the acknowledgements.
        """
        ctx = MappingContext(
            tz=self._tz,
            observed_at=self._clock(),
            plans=plans,
            contracts=state.contracts,
        )
        pending: list[Any] = []
        staged: dict[str, ContractSnapshot] = {}
        for record in records:
            try:
                event = spec.mapper(record, ctx)
                extra = self._status_change(spec, record, event, state, ctx, staged)
            except IxcMappingError as exc:
                pending.append(self._dead_letter(spec, exc, record, report))
                continue
            # Emitted concurrently within a page: a page holds each IXC id once, so no two
            # events share a key; pages are awaited one after the other, so per-key order holds.
            pending.append(self._sink.emit(spec.topic, event))
            report.emitted += 1
            if extra is not None and spec.status_topic is not None:
                pending.append(self._sink.emit(spec.status_topic, extra))
                report.status_changes += 1
        await asyncio.gather(*pending)
        state.contracts.update(staged)

    def _status_change(
        self,
        spec: FormSpec,
        record: IxcRecord,
        event: Event,
        state: PollerState,
        ctx: MappingContext,
        staged: dict[str, ContractSnapshot],
    ) -> Event | None:
        if spec.status_topic is None:
            return None
        contract_id = event["contract_id"]
        current = mapping.contract_snapshot(record)
        previous = state.contracts.get(contract_id)
        staged[contract_id] = current
        # First sighting: nothing to compare with. Emitting "changed" for every contract on a
        # fresh start would trigger a block/unblock flood downstream.
        if previous is None:
            return None
        return mapping.contract_status_changed_event(previous, event, record, ctx)

    async def _dead_letter(
        self, spec: FormSpec, exc: IxcMappingError, record: IxcRecord, report: FormReport
    ) -> None:
        log.warning("ixc %s: dead-lettering record: [%s] %s", spec.form, exc.code, exc)
        report.dead_lettered += 1
        await self._dead_letters.dead_letter(
            DeadLetter(
                form=spec.form,
                topic=spec.topic,
                record_id=exc.record_id,
                field=exc.field,
                code=exc.code,
                message=str(exc),
                record=DeadLetter.redacted(record),
            )
        )
