"""The fan-out state machine: campaign commands in, message batches and progress events out.

No Kafka here: ``publish`` (blocks until the broker acknowledged the batch) and ``progress`` are
ports the runner (``streams.campaigns.runner``) or a unit test provides. One ``step`` does one
unit of work (plan a campaign, or publish one batch, or release held recipients), so commands
read between steps pause, resume or cancel a campaign within one batch.

Crash recovery (docs/decisions/0071-campaign-plan-before-publish.md): every progress event
carries a resume cursor (the last (recipient, channel) in plan order up to which every message
was acknowledged or deliberately skipped). A restarted engine restores runs from
``campaign.progress``, replays ``campaign.definitions`` (no progress emitted while catching up),
re-plans and continues after the cursor. Message ids are deterministic, so a batch published
again after a crash carries the same ids and the delivery ledger drops the duplicates.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streams.campaigns.plan import (
    CampaignError,
    CampaignSpec,
    FrequencyHistory,
    Plan,
    PlanCounts,
    PlannedMessage,
    cursor_text,
    parse_cursor,
    plan_campaign,
)
from streams.campaigns.state import SubscriberState

logger = logging.getLogger(__name__)

SOURCE = "campaign-fanout"
TERMINAL = frozenset({"cancelled", "failed", "done"})

Publish = Callable[[CampaignSpec, Sequence[PlannedMessage]], None]
EmitProgress = Callable[[Mapping[str, Any]], None]
Clock = Callable[[], int]


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def message_record(
    campaign: CampaignSpec, message: PlannedMessage, now_ms: int, *, lane: str | None = None
) -> dict[str, Any]:
    """The ``ixc.filas.campaign.CampaignMessage`` of a planned message (event id = message id).

    Timestamps stay epoch milliseconds (the Avro encoder takes them as they are)."""
    return {
        "envelope": {
            "event_id": message.message_id,
            "occurred_at": now_ms,
            "source_system": SOURCE,
            "correlation_id": campaign.campaign_id,
        },
        "message_id": message.message_id,
        "campaign_id": campaign.campaign_id,
        "recipient_id": message.recipient_id,
        "contract_id": message.contract_id,
        "channel": message.channel,
        "address": message.address,
        "subject": message.subject,
        "body": message.body,
        "lane": lane or campaign.lane,
        "not_before": message.not_before_ms,
        "expires_at": None,
        "purpose": campaign.purpose,
        # Re-checked at send against what the recipient was really sent (decision 0074).
        "frequency_cap_per_day": campaign.frequency_cap,
    }


@dataclass
class CampaignRun:
    campaign_id: str
    spec: CampaignSpec | None
    status: str
    order: int
    lane: str = "bulk"
    cursor: tuple[str, str] | None = None  # resume cursor, persisted in progress events
    plan: Plan | None = None
    next_index: int = 0
    blocked: bool = False  # a held message precedes next_index: the cursor stops advancing
    deferred: dict[tuple[str, str], PlannedMessage] = field(default_factory=dict)
    counts: PlanCounts = field(default_factory=PlanCounts)
    queued: int = 0
    error_code: str | None = None
    error: str | None = None
    reported: str | None = None  # last status on campaign.progress

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class FanoutEngine:
    def __init__(
        self,
        state: SubscriberState,
        history: FrequencyHistory,
        publish: Publish,
        progress: EmitProgress,
        clock: Clock,
        *,
        batch_size: int = 2000,
        hold_purposes: Collection[str] = ("marketing", "billing"),
    ) -> None:
        self.state = state
        self.history = history
        self._publish = publish
        self._progress = progress
        self._clock = clock
        self.batch_size = batch_size
        self.hold_purposes = tuple(hold_purposes)
        self.runs: dict[str, CampaignRun] = {}
        self.live = False
        self._order = 0

    # --- rebuilding -------------------------------------------------------------------------

    def restore_progress(self, record: Mapping[str, Any]) -> None:
        """Latest progress event of a campaign (read before the definitions are replayed)."""
        cid = str(record["campaign_id"])
        run = self.runs.get(cid)
        if run is None:
            run = self.runs[cid] = CampaignRun(cid, None, str(record["status"]), self._next())
        run.status = run.reported = str(record["status"])
        run.lane = str(record.get("lane") or run.lane)
        run.cursor = parse_cursor(record.get("cursor"))
        run.queued = int(record.get("queued") or 0)
        run.error_code, run.error = record.get("error_code"), record.get("error")

    def go_live(self) -> None:
        """Definitions caught up: drop runs without a definition, announce changed statuses."""
        self.live = True
        for cid in [c for c, r in self.runs.items() if r.spec is None]:
            del self.runs[cid]
        for run in self.runs.values():
            if run.status != run.reported:
                self._emit(run)

    def _next(self) -> int:
        self._order += 1
        return self._order

    # --- commands ---------------------------------------------------------------------------

    def apply(self, record: Mapping[str, Any]) -> None:
        """One ``ixc.filas.campaign.Campaign`` event (create / pause / resume / cancel)."""
        cid = str(record["campaign_id"])
        command = str(record["command"])
        run = self.runs.get(cid)
        if command == "create":
            try:
                spec = CampaignSpec.from_record(record)
            except (KeyError, TypeError, ValueError) as exc:
                spec = None
                logger.error("campaign %s: undecodable definition: %s", cid, exc)
            if run is not None and run.spec is not None:
                return  # a second create of the same campaign changes nothing
            if run is None:
                run = self.runs[cid] = CampaignRun(cid, spec, "", self._next())
            run.spec = spec
            run.lane = spec.lane if spec else str(record.get("lane") or "bulk")
            if run.status in ("done", "failed", "cancelled") and run.reported == run.status:
                return  # finished before a restart
            if spec is None:
                self._fail(run, "campaign_invalid", "campaign definition could not be decoded")
                return
            run.status = self._initial_status(spec)
            self._emit(run)
            return
        if run is None or run.spec is None:
            logger.warning("campaign %s: %s before create, ignored", cid, command)
            return
        if command == "pause" and run.status in ("running", "scheduled"):
            run.status = "paused"
            self._drop_plan(run)
            self._emit(run)
        elif command == "resume" and run.status == "paused":
            run.status = self._initial_status(run.spec)
            self._emit(run)
        elif command == "cancel" and not run.terminal:
            run.status = "cancelled"
            self._drop_plan(run)
            self._emit(run)

    def _initial_status(self, spec: CampaignSpec) -> str:
        if spec.schedule_at_ms is not None and spec.schedule_at_ms > self._clock():
            return "scheduled"
        return "running"

    def _drop_plan(self, run: CampaignRun) -> None:
        """Forget unpublished messages (re-planned on resume) and their frequency-cap entries."""
        if run.plan is not None and run.spec is not None:
            sent = [m for m in run.plan.messages[: run.next_index] if not m.held]
            self.history.replace_campaign(run.campaign_id, run.spec.lane, sent)
        run.plan = None
        run.deferred.clear()
        run.blocked = False
        run.next_index = 0

    # --- work -------------------------------------------------------------------------------

    def pending(self) -> bool:
        """Whether a campaign has work that needs no outside event (plan or next batch)."""
        return any(
            r.status == "running" and (r.plan is None or r.next_index < len(r.plan.messages))
            for r in self.runs.values()
        )

    def step(self) -> bool:
        """One unit of work; False when there was nothing to do."""
        if not self.live:
            return False
        now = self._clock()
        for run in self.runs.values():
            spec = run.spec
            if run.status == "scheduled" and spec is not None and (spec.schedule_at_ms or 0) <= now:
                run.status = "running"
                self._emit(run)
        candidates = sorted(
            (r for r in self.runs.values() if r.status == "running" and r.spec is not None),
            key=lambda r: (r.lane != "transactional", r.order),
        )
        for run in candidates:
            if run.plan is None:
                self._plan(run, now)
                return True
            if run.next_index < len(run.plan.messages):
                self._publish_batch(run, now)
                return True
        return any(run.deferred and self._release(run, now) for run in candidates)

    def _plan(self, run: CampaignRun, now: int) -> None:
        assert run.spec is not None
        try:
            plan = plan_campaign(
                run.spec,
                self.state,
                self.history,
                now,
                held=self.state.customers_in_outage(),
                hold_purposes=self.hold_purposes,
            )
        except CampaignError as exc:
            logger.error("campaign %s failed: %s", run.campaign_id, exc)
            self._fail(run, exc.code, str(exc))
            return
        run.plan = plan
        run.counts = plan.counts
        run.next_index = plan.start_after(run.cursor)
        run.blocked = False
        self.history.replace_campaign(
            run.campaign_id, run.spec.lane, [m for m in plan.messages if not m.held]
        )
        logger.info(
            "campaign %s planned: %d matched, %d messages, resuming at %d",
            run.campaign_id,
            plan.counts.matched,
            len(plan.messages),
            run.next_index,
        )
        self._finish_if_done(run)

    def _publish_batch(self, run: CampaignRun, now: int) -> None:
        assert run.plan is not None
        assert run.spec is not None
        batch = run.plan.messages[run.next_index : run.next_index + self.batch_size]
        send = [m for m in batch if not m.held]
        if send:
            self._publish(run.spec, send)
        run.queued += len(send)
        for m in batch:
            if m.held:
                run.deferred[m.key] = m
                run.blocked = True
            elif not run.blocked:
                run.cursor = m.key
        run.next_index += len(batch)
        if not self._finish_if_done(run):
            self._emit(run)

    def _release(self, run: CampaignRun, now: int) -> bool:
        """Publish held messages whose recipients left every outage; True if any was."""
        assert run.spec is not None
        in_outage = self.state.customers_in_outage()
        free = {m.recipient_id for m in run.deferred.values()} - in_outage
        if not free:
            return False
        try:
            plan = plan_campaign(
                run.spec,
                self.state,
                self.history,
                now,
                held=in_outage,
                hold_purposes=self.hold_purposes,
                only=free,
            )
        except CampaignError as exc:
            self._fail(run, exc.code, str(exc))
            return True
        send = [m for m in plan.messages if m.key in run.deferred and not m.held]
        if send:
            self._publish(run.spec, send)
        for m in send:
            self.history.add(
                run.campaign_id, m.recipient_id, m.channel, run.spec.lane, m.not_before_ms
            )
        run.queued += len(send)
        # Released recipients no longer eligible (opted out meanwhile) are dropped, not sent.
        for rid in free:
            for key in [k for k in run.deferred if k[0] == rid]:
                del run.deferred[key]
        if not self._finish_if_done(run):
            self._emit(run)
        return True

    def _finish_if_done(self, run: CampaignRun) -> bool:
        assert run.plan is not None
        if run.next_index < len(run.plan.messages) or run.deferred:
            return False
        run.status = "done"
        if run.plan.messages:
            run.cursor = run.plan.messages[-1].key
        self._emit(run)
        return True

    def _fail(self, run: CampaignRun, code: str, message: str) -> None:
        run.status = "failed"
        run.error_code, run.error = code, message[:1000]
        run.plan = None
        self.history.drop_campaign(run.campaign_id)
        self._emit(run)

    # --- progress ---------------------------------------------------------------------------

    def _emit(self, run: CampaignRun) -> None:
        if not self.live:
            return
        run.reported = run.status
        self._progress(self.progress_record(run))

    def progress_record(self, run: CampaignRun) -> dict[str, Any]:
        c = run.counts
        return {
            "envelope": {
                "event_id": str(uuid.uuid4()),
                "occurred_at": utc(self._clock()),
                "source_system": SOURCE,
                "correlation_id": run.campaign_id,
            },
            "campaign_id": run.campaign_id,
            "status": run.status,
            "lane": run.lane,
            "matched": c.matched,
            "planned": c.planned,
            "queued": run.queued,
            "skipped_no_consent": c.skipped_no_consent,
            "skipped_opt_out": c.skipped_opt_out,
            "skipped_invalid_address": c.skipped_invalid_address,
            "skipped_frequency_cap": c.skipped_frequency_cap,
            "held_outage": len(run.deferred) if run.plan is not None else c.held_outage,
            "cursor": cursor_text(run.cursor) if run.cursor else None,
            "error_code": run.error_code,
            "error": run.error,
        }
