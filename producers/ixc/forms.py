"""Which IXC forms the adapter polls, in order, and which topic and mapper each one feeds.

Order matters: contracts before logins (a login is REDUCED when its contract is), and POPs
before their equipment before ONUs (parents appear before children on a fresh start).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from filas.catalog import TopicSpec, ixc_state
from producers.ixc import mapping
from producers.ixc.mapping import Event, MappingContext

Mapper = Callable[[Mapping[str, str], MappingContext], Event]

PLANS_FORM = "radgrupos"


@dataclass(frozen=True, slots=True)
class FormSpec:
    """One IXC form: its name, the topic it feeds and the mapper from record to event.

    ``status_topic`` is set on the contract form, whose records also yield
    ContractStatusChanged events; ``needs_plans`` on forms whose mapper resolves RADIUS groups.
    """

    form: str
    topic: TopicSpec
    mapper: Mapper
    status_topic: TopicSpec | None = None
    needs_plans: bool = False
    updated_column: str = mapping.UPDATED_FIELD

    def column(self, name: str) -> str:
        return f"{self.form}.{name}"


CUSTOMERS = FormSpec("cliente", ixc_state.CUSTOMERS, mapping.customer_event)
CONTRACTS = FormSpec(
    "cliente_contrato",
    ixc_state.CONTRACTS,
    mapping.contract_event,
    status_topic=ixc_state.CONTRACT_STATUS,
)
SUBSCRIBERS = FormSpec(
    "radusuarios", ixc_state.SUBSCRIBERS, mapping.subscriber_event, needs_plans=True
)
# Form name chosen: no public source confirmed the NAS/concentrator form's name.
NAS = FormSpec("concentrador", ixc_state.NAS, mapping.nas_event)
POPS = FormSpec("radpop", ixc_state.DEVICES, mapping.pop_device_event)
RADIOS = FormSpec("radpop_radio", ixc_state.DEVICES, mapping.radio_device_event)
ONUS = FormSpec("radpop_radio_cliente_fibra", ixc_state.DEVICES, mapping.onu_device_event)

FORMS: tuple[FormSpec, ...] = (CUSTOMERS, CONTRACTS, SUBSCRIBERS, NAS, POPS, RADIOS, ONUS)
