"""The run's summary, queried from ClickHouse (what the sink landed) and Kafka (lag), beside what
the run's own clients saw, so a difference between the two is visible at a glance."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from filas.catalog import Catalog
from filas.catalog.campaigns import DELIVERY_RESULTS
from filas.catalog.network import ALERTS
from filas.catalog.radius import ACCOUNTING, AUTH_DECISIONS, COA_RESULTS
from filas.catalog.requests import REQUEST_STATUS
from filas.catalog.spec import TopicSpec
from filas.settings import Settings

if TYPE_CHECKING:
    from filas.homologation.run import DayFacts


@dataclass
class Summary:
    auth_decisions: int = 0
    accepts: int = 0
    rejects: int = 0
    auth_latency_avg_ms: float = 0.0
    auth_latency_p50_ms: float = 0.0
    auth_latency_p99_ms: float = 0.0
    auth_peak_per_s: int = 0
    accounting: dict[str, int] = field(default_factory=dict)
    coa_outcomes: dict[str, int] = field(default_factory=dict)
    coa_unblock_acks: int = 0
    alerts: int | None = None
    # Service requests of the run (requests.status rows; accept -> done from their own stamps).
    requests_accepted: int = 0
    requests_done: int = 0
    requests_failed: int = 0
    requests_dead_lettered: int = 0
    requests_accept_to_done_p50_ms: float = 0.0
    requests_accept_to_done_p99_ms: float = 0.0
    requests_coa_acks: int = 0  # CoA ACKs for the paying contracts with a live session
    messages: dict[str, int] = field(default_factory=dict)
    lag_total: int | None = None
    lag_by_group: dict[str, int] = field(default_factory=dict)
    landed_in_s: float = 0.0


def _table(catalog: Catalog, spec: TopicSpec) -> str:
    from consumers.clickhouse.tables import table_name

    return table_name(catalog.resolve(spec).name)


def collect_summary(
    settings: Settings,
    facts: DayFacts,
    started_at: datetime,
    echo: Callable[[str], None],
    groups: Sequence[str],
    *,
    land_timeout_s: float = 120.0,
) -> Summary:
    from consumers.clickhouse.client import ClickHouse

    catalog = Catalog.build(settings.topics.prefix)
    since = {"start": started_at.strftime("%Y-%m-%d %H:%M:%S")}
    ch = Db(
        ClickHouse(settings.clickhouse),
        {
            "auth": _table(catalog, AUTH_DECISIONS),
            "acct": _table(catalog, ACCOUNTING),
            "coa": _table(catalog, COA_RESULTS),
            "alerts": _table(catalog, ALERTS),
            "delivery": _table(catalog, DELIVERY_RESULTS),
            "requests": _table(catalog, REQUEST_STATUS),
        },
    )
    unblocked = list(facts.unblocked_with_session)
    paid_online = list(facts.requests_paid_with_session)
    summary = Summary()
    begin = time.monotonic()
    try:
        # Wait until the sink has landed what the run saw answered (at-least-once: >=).
        expected_auth = facts.accepts + facts.rejects
        while True:
            decided = _scalar(ch.query("SELECT count() FROM $auth FINAL WHERE $window", since))
            acks = _unblock_acks(ch, unblocked, since)
            paid_acks = _unblock_acks(ch, paid_online, since)
            landed = acks >= len(unblocked) and paid_acks >= len(paid_online)
            if (decided >= expected_auth and landed) or (time.monotonic() - begin > land_timeout_s):
                break
            time.sleep(1.0)
        summary.landed_in_s = round(time.monotonic() - begin, 1)
        row = ch.query(
            "SELECT count(), countIf(decision = 'accept'), countIf(decision = 'reject'), "
            "avg(latency_us), quantileExact(0.5)(latency_us), quantileExact(0.99)(latency_us) "
            "FROM $auth FINAL WHERE $window",
            since,
        )[0]
        summary.auth_decisions, summary.accepts, summary.rejects = (int(x) for x in row[:3])
        summary.auth_latency_avg_ms = round(float(row[3] or 0) / 1000, 3)
        summary.auth_latency_p50_ms = round(float(row[4] or 0) / 1000, 3)
        summary.auth_latency_p99_ms = round(float(row[5] or 0) / 1000, 3)
        summary.auth_peak_per_s = _scalar(
            ch.query(
                "SELECT max(c) FROM (SELECT toDateTime(envelope_occurred_at) AS s, count() AS c "
                "FROM $auth FINAL WHERE $window GROUP BY s)",
                since,
            )
        )
        summary.accounting = {
            str(k): int(v)
            for k, v in ch.query(
                "SELECT status_type, count() FROM $acct FINAL WHERE $window GROUP BY status_type",
                since,
            )
        }
        summary.coa_outcomes = {
            str(k): int(v)
            for k, v in ch.query(
                "SELECT outcome, count() FROM $coa FINAL WHERE $window GROUP BY outcome", since
            )
        }
        summary.coa_unblock_acks = _unblock_acks(ch, unblocked, since)
        summary.requests_coa_acks = _unblock_acks(ch, paid_online, since)
        summary.alerts = _optional_count(ch, since)
        if facts.request_ids:
            _request_figures(ch, summary, facts, land_timeout_s)
        if facts.campaign_id is not None:
            begin = time.monotonic()
            while True:
                rows = ch.query(
                    "SELECT channel, status, count() FROM $delivery FINAL "
                    "WHERE campaign_id = %(campaign)s GROUP BY channel, status",
                    {"campaign": facts.campaign_id},
                )
                summary.messages = {f"{c}:{s}": int(n) for c, s, n in rows}
                sent = sum(
                    n for k, n in summary.messages.items() if k.endswith((":sent", ":delivered"))
                )
                if sent >= facts.emails_at_sink + facts.sms_at_sink or (
                    time.monotonic() - begin > land_timeout_s
                ):
                    break
                time.sleep(1.0)
    finally:
        ch.close()
    try:
        summary.lag_by_group = _lag(settings, groups)
        summary.lag_total = sum(summary.lag_by_group.values())
    except Exception as exc:
        echo(f"lag: not read ({type(exc).__name__}: {exc})")
    return summary


def _scalar(rows: Sequence[tuple[Any, ...]]) -> int:
    return int(rows[0][0] or 0) if rows else 0


class Db:
    """ClickHouse queries written with $names: the catalog's (prefixed) table names, quoted, and
    $window, the run's time window; values always travel as parameters."""

    WINDOW = "envelope_occurred_at >= toDateTime(%(start)s, 'UTC')"

    def __init__(self, clickhouse: Any, tables: dict[str, str]) -> None:
        from consumers.clickhouse.client import quote

        self.clickhouse = clickhouse
        self.names = {f"${k}": quote(v) for k, v in tables.items()} | {
            "$window": self.WINDOW,
            "$accept_ms": ACCEPT_TO_ROW_MS,
        }
        self.tables = tables

    def query(self, template: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        sql = template
        for name in sorted(self.names, key=len, reverse=True):
            sql = sql.replace(name, self.names[name])
        rows: list[tuple[Any, ...]] = self.clickhouse.query(sql, params)
        return rows

    def close(self) -> None:
        self.clickhouse.close()


def _unblock_acks(ch: Db, contracts: list[str], since: dict[str, str]) -> int:
    if not contracts:
        return 0
    return _scalar(
        ch.query(
            "SELECT count() FROM $coa FINAL WHERE $window AND outcome = 'ACK' "
            "AND action = 'COA' AND reason = 'PAYMENT_CONFIRMED' "
            "AND contract_id IN %(contracts)s",
            since | {"contracts": tuple(contracts)},
        )
    )


# A requests.status row's accept -> this state, in ms (DateTime seconds + their _ms columns).
ACCEPT_TO_ROW_MS = (
    "(toUnixTimestamp(updated_at) * 1000 + updated_at_ms"
    " - toUnixTimestamp(submitted_at) * 1000 - submitted_at_ms)"
)


def _request_figures(ch: Db, summary: Summary, facts: DayFacts, timeout_s: float) -> None:
    """The run's requests as requests.status landed them: accepted (a QUEUED row), final states,
    and accept -> done (the DONE row's updated_at - submitted_at, the ingress's accept)."""
    final = sum(n for state, n in facts.requests_states.items() if state != "not final")
    params = {"ids": tuple(facts.request_ids)}
    begin = time.monotonic()
    while True:
        row = ch.query(
            "SELECT uniqExactIf(request_id, state = 'QUEUED'), "
            "uniqExactIf(request_id, state = 'DONE'), uniqExactIf(request_id, state = 'FAILED'), "
            "uniqExactIf(request_id, state = 'DEAD_LETTERED'), "
            "quantileExactIf(0.5)($accept_ms, state = 'DONE'), "
            "quantileExactIf(0.99)($accept_ms, state = 'DONE') "
            "FROM $requests WHERE request_id IN %(ids)s",
            params,
        )[0]
        landed = int(row[1]) + int(row[2]) + int(row[3])
        if landed >= final or time.monotonic() - begin > timeout_s:
            break
        time.sleep(1.0)
    summary.requests_accepted, summary.requests_done = int(row[0]), int(row[1])
    summary.requests_failed, summary.requests_dead_lettered = int(row[2]), int(row[3])
    summary.requests_accept_to_done_p50_ms = round(float(row[4] or 0), 1)
    summary.requests_accept_to_done_p99_ms = round(float(row[5] or 0), 1)


def _optional_count(ch: Db, since: dict[str, str]) -> int | None:
    """Alerts opened in the run's window (updates, merges and resolutions not counted)."""
    exists = ch.query("EXISTS TABLE $alerts")
    if not exists or not int(exists[0][0]):
        return None
    return _scalar(
        ch.query("SELECT count() FROM $alerts FINAL WHERE $window AND action = 'open'", since)
    )


def _lag(settings: Settings, groups: Sequence[str]) -> dict[str, int]:
    """Records each of the run's consumer groups has yet to read (end offset - committed)."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient, OffsetSpec

    admin = AdminClient(settings.kafka.client_config())
    lag: dict[str, int] = {}
    for group in groups:
        [future] = admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group)], request_timeout=15
        ).values()
        committed = [tp for tp in future.result().topic_partitions if tp.offset >= 0]
        if not committed:
            continue
        ends = admin.list_offsets(
            {TopicPartition(tp.topic, tp.partition): OffsetSpec.latest() for tp in committed},
            request_timeout=15,
        )
        end = {(tp.topic, tp.partition): f.result().offset for tp, f in ends.items()}
        lag[group] = sum(max(0, end[(tp.topic, tp.partition)] - tp.offset) for tp in committed)
    return lag


def format_summary(summary: Summary, facts: DayFacts) -> list[str]:
    s, f = summary, facts
    lines = [
        "",
        "================ homologation summary (ClickHouse and Kafka) ================",
        f"auth decisions      {s.auth_decisions} ({s.accepts} accept, {s.rejects} reject); "
        f"clients saw {f.accepts} accept, {f.rejects} reject, {f.unanswered} unanswered",
        f"auth latency        avg {s.auth_latency_avg_ms} ms, p50 {s.auth_latency_p50_ms} ms, "
        f"p99 {s.auth_latency_p99_ms} ms (gateway, packet in -> reply out)",
        f"auth rate           {f.login_rate_per_s:.0f}/s offered in the morning logins, peak "
        f"{s.auth_peak_per_s}/s landed; NAS round trip p50 {f.login_p50_ms:.1f} ms "
        f"p99 {f.login_p99_ms:.1f} ms",
        f"reconnect storm     POP {f.storm_pop}: {f.storm_offered} re-auths, "
        f"{f.storm_accepts} accepted, {f.storm_unanswered} unanswered, "
        f"p99 {f.storm_p99_ms:.1f} ms",
        f"accounting          {_pairs(s.accounting)}",
        f"CoA results         {_pairs(s.coa_outcomes)}; unblock ACKs {s.coa_unblock_acks} for "
        f"{len(f.unblocked_with_session)} unblocked contracts with a live session",
        f"service requests    {s.requests_accepted} accepted, {s.requests_done} done, "
        f"{s.requests_failed} failed, {s.requests_dead_lettered} dead-lettered; accept -> done "
        f"p50 {s.requests_accept_to_done_p50_ms} ms, p99 {s.requests_accept_to_done_p99_ms} ms "
        f"(ingress answered {f.requests_accepted}/{f.requests_sent} with 202; status URLs said "
        f"{_pairs(f.requests_states) or 'nothing'}); CoA ACKs {s.requests_coa_acks} for "
        f"{len(f.requests_paid_with_session)} paying contracts with a live session",
        "alerts opened       "
        + ("no alerts table (alerting not run)" if s.alerts is None else str(s.alerts))
        + (
            f" (outage POP: {f.outage_devices} devices cut off; {f.notices_at_sinks} "
            "subscriber notices at the sinks)"
            if f.outage_devices
            else ""
        ),
        f"messages            {_pairs(s.messages) or 'none'} (sinks received "
        f"{f.emails_at_sink} e-mails, {f.sms_at_sink} SMS of the campaign, and "
        f"{f.other_messages_at_sinks} payment confirmations)",
        f"lag                 {s.lag_total if s.lag_total is not None else '?'} records in "
        f"total; {_pairs({k: v for k, v in s.lag_by_group.items() if v}) or 'every group idle'}",
        f"landed              the sink caught up {s.landed_in_s}s after the day ended",
    ]
    for name, reason in f.skipped.items():
        lines.append(f"skipped             {name}: {reason}")
    return lines


def _pairs(values: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(values.items()))
