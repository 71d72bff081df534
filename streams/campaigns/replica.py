"""Keeps a ``SubscriberState`` current from Kafka, like the RADIUS replica (decision 0050).

A ``streams.topic_state`` reader: every partition of the state topics from the beginning (no
committed group: every fan-out process holds the whole state), ``ready`` once it has read up to
the high watermarks seen at start-up. Topics read:
``ixc.customers``, ``ixc.contracts``, ``ixc.subscribers`` (login -> customer, never the
password), ``campaign.opt-outs`` and ``net.responses`` (outage holds; 30 days of retention, so
an outage still open is always seen).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from filas.catalog import Catalog, TopicSpec
from filas.catalog.campaigns import OPT_OUTS
from filas.catalog.ixc_state import CONTRACTS, CUSTOMERS, SUBSCRIBERS
from filas.catalog.network import RESPONSES
from filas.errors import FilasError
from filas.metrics import ERRORS, EVENTS_IN
from filas.settings import KafkaSettings
from streams.campaigns.outage import apply_hold
from streams.campaigns.state import SubscriberState
from streams.topic_state import TopicStateFeeder

logger = logging.getLogger(__name__)
COMPONENT = "campaign-fanout"

Apply = Callable[[str, Mapping[str, Any] | None], None]


class StateFeeder(TopicStateFeeder):
    """Reads the state topics into ``state`` on a daemon thread; ``on_change`` after holds move."""

    def __init__(
        self,
        kafka: KafkaSettings,
        catalog: Catalog,
        serdes: Callable[[TopicSpec], Any],
        state: SubscriberState,
        *,
        on_holds_changed: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(kafka, label="campaign state", batch=1000)
        self.state = state
        self._on_holds_changed = on_holds_changed
        self._specs = [
            catalog.resolve(s) for s in (CUSTOMERS, CONTRACTS, SUBSCRIBERS, OPT_OUTS, RESPONSES)
        ]
        self._decoders = {spec.name: serdes(spec).deserialize for spec in self._specs}
        names = [s.name for s in self._specs]
        self._appliers: dict[str, Apply] = {
            names[0]: state.put_customer,
            names[1]: state.put_contract,
            names[2]: state.put_login,
            names[3]: state.put_opt_out,
            names[4]: self._response,
        }

    def _response(self, _key: str, record: Mapping[str, Any] | None) -> None:
        if record is not None and apply_hold(self.state, record) and self._on_holds_changed:
            self._on_holds_changed()

    def topics(self) -> Sequence[TopicSpec]:
        return self._specs

    def _apply(self, msg: Any) -> None:
        topic, key, value = msg.topic(), msg.key(), msg.value()
        record: Mapping[str, Any] | None = None
        if value is not None:
            try:
                record = self._decoders[topic](value)
            except FilasError as exc:
                # Never logs the value: ixc.subscribers carries passwords (decision 0020).
                self.decode_errors += 1
                ERRORS.labels(component=COMPONENT, kind="state_decode").inc()
                logger.error("campaign state: skipped %s offset %s: %s", topic, msg.offset(), exc)
                self._progress(topic, msg.partition(), msg.offset())
                return
        try:
            self._appliers[topic](key.decode(errors="replace") if key else "", record)
        except (KeyError, TypeError, ValueError) as exc:
            ERRORS.labels(component=COMPONENT, kind="state_apply").inc()
            logger.error("campaign state: bad %s offset %s: %s", topic, msg.offset(), exc)
        self.applied += 1
        EVENTS_IN.labels(component=COMPONENT, topic=topic).inc()
        self._progress(topic, msg.partition(), msg.offset())
