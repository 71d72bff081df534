"""SIMULATOR: a deterministic fake ISP in IXC's shapes, generated from a seed.

Same seed and sizes, same ISP: every record, password and timestamp. Records are dicts of
strings as IXC returns them; timestamps are IXC local-time strings that advance one simulated
second per mutation, and several records share each generated timestamp on purpose, to exercise
the poller's tie handling. Mutations (``update``, ``block_contract``, ``unblock_contract``,
``touch``) bump ``ultima_atualizacao`` like IXC does.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

FORMAT = "%Y-%m-%d %H:%M:%S"
BASE_TIME = datetime(2024, 5, 1, 8, 0, 0)
# How many generated records share each timestamp.
RECORDS_PER_TICK = 3

FIRST_NAMES = ("Ana", "Bruno", "Carla", "Diego", "Elisa", "Fábio", "Gabriela", "Heitor", "Iara")
LAST_NAMES = ("Silva", "Souza", "Oliveira", "Santos", "Pereira", "Lima", "Costa", "Ribeiro")
STATES = ("SP", "RJ", "MG", "PR", "SC", "RS", "BA", "PE", "GO", "AM")
PLANS = (
    ("1", "FIBRA_100M", "100M", "50M", "89.90"),
    ("2", "FIBRA_300M", "300M", "150M", "99.90"),
    ("3", "FIBRA_500M", "500M", "250M", "129.90"),
    ("4", "FIBRA_1G", "1G", "500M", "199.90"),
)
VENDORS = ("MIKROTIK", "HUAWEI", "JUNIPER", "ACCEL_PPP", "CISCO")

FORMS = (
    "radgrupos",
    "cliente",
    "cliente_contrato",
    "radusuarios",
    "concentrador",
    "radpop",
    "radpop_radio",
    "radpop_radio_cliente_fibra",
)


ADDRESS_PLANS = ("private", "loopback")


class SimulatedIsp:
    """All forms of one fake ISP: ``forms[form][id] -> record``.

    ``address_plan="loopback"`` puts every NAS and device on 127.<loopback_octet>.x.y (NAS on
    .1.n, POPs on .2.p, OLTs on .3.o, ONUs from .10.1): addresses a homologation run on one
    machine can send from (NAS) and ping (devices). The default "private" plan is unchanged.
    """

    def __init__(
        self,
        *,
        seed: int = 1,
        customers: int = 50,
        devices: int = 20,
        nas: int = 2,
        address_plan: str = "private",
        loopback_octet: int = 0,
    ):
        if customers < 0 or devices < 0 or nas < 0:
            raise ValueError("sizes must be >= 0")
        if address_plan not in ADDRESS_PLANS:
            raise ValueError(f"address_plan must be one of {ADDRESS_PLANS}")
        if not 0 <= loopback_octet <= 255:
            raise ValueError("loopback_octet must be 0..255")
        if address_plan == "loopback" and nas > 254:
            raise ValueError("the loopback plan holds at most 254 NAS")
        self.seed = seed
        self.address_plan = address_plan
        self._octet = loopback_octet
        self._rng = random.Random(seed)
        self.forms: dict[str, dict[str, dict[str, str]]] = {form: {} for form in FORMS}
        self._tick = 0
        self._generate(customers, devices, nas)

    # -- reading ---------------------------------------------------------------------------

    def records(self, form: str) -> list[dict[str, str]]:
        if form not in self.forms:
            raise KeyError(form)
        return list(self.forms[form].values())

    def get(self, form: str, record_id: str) -> dict[str, str]:
        return self.forms[form][record_id]

    # -- mutating (what the ERP's users would do) ------------------------------------------

    def now(self) -> str:
        """Advance the simulated clock one second and return it as IXC writes dates."""
        self._tick += 1
        return (BASE_TIME + timedelta(seconds=self._tick)).strftime(FORMAT)

    def update(self, form: str, record_id: str, changes: Mapping[str, str]) -> dict[str, str]:
        """Change fields of a record and bump its ``ultima_atualizacao`` to a new second."""
        return self.touch(form, [record_id], changes)[0]

    def touch(
        self, form: str, record_ids: Iterable[str], changes: Mapping[str, str] | None = None
    ) -> list[dict[str, str]]:
        """Bulk update: every record gets the same new ``ultima_atualizacao``, like an IXC
        mass operation does."""
        stamp = self.now()
        touched = []
        for record_id in record_ids:
            record = self.forms[form][record_id]
            record.update({k: str(v) for k, v in (changes or {}).items()})
            record["ultima_atualizacao"] = stamp
            touched.append(record)
        return touched

    def insert(self, form: str, record: Mapping[str, str]) -> dict[str, str]:
        table = self.forms[form]
        record_id = str(max((int(i) for i in table), default=0) + 1)
        stored = {**{k: str(v) for k, v in record.items()}, "id": record_id}
        stored["ultima_atualizacao"] = self.now()
        table[record_id] = stored
        return stored

    def block_contract(self, contract_id: str, code: str = "CA") -> dict[str, str]:
        """Block for non-payment (CA), manually (CM) or reduce (FA); the login follows."""
        contract = self.update(
            "cliente_contrato",
            contract_id,
            {"status_internet": code, "desbloqueio_confianca_ativo": "N"},
        )
        if code in ("CA", "CM"):
            self._set_logins(contract_id, active=False)
        return contract

    def unblock_contract(self, contract_id: str, *, trust: bool = False) -> dict[str, str]:
        """Unblock after payment, or a trust unblock (desbloqueio de confiança)."""
        contract = self.update(
            "cliente_contrato",
            contract_id,
            {"status_internet": "A", "desbloqueio_confianca_ativo": "S" if trust else "N"},
        )
        self._set_logins(contract_id, active=True)
        return contract

    def _set_logins(self, contract_id: str, *, active: bool) -> None:
        ids = [i for i, r in self.forms["radusuarios"].items() if r["id_contrato"] == contract_id]
        if ids:
            self.touch("radusuarios", ids, {"ativo": "S" if active else "N"})

    # -- generation ------------------------------------------------------------------------

    def _stamp(self, index: int) -> str:
        return (
            BASE_TIME - timedelta(days=1) + timedelta(seconds=index // RECORDS_PER_TICK)
        ).strftime(FORMAT)

    def _ip(self, private: str, third: int, index: int) -> str:
        """The record's address under the plan (loopback: 127.<octet>.<third>.<index>)."""
        if self.address_plan != "loopback" or index > 254:
            return private
        return f"127.{self._octet}.{third}.{index}"

    def _generate(self, customers: int, devices: int, nas: int) -> None:
        rng = self._rng
        for i, (plan_id, name, down, up, _price) in enumerate(PLANS):
            self.forms["radgrupos"][plan_id] = {
                "id": plan_id,
                "grupo": name,
                "download": down,
                "upload": up,
                "ultima_atualizacao": self._stamp(i),
            }
        pops = max(1, devices // 40) if devices else 0
        olts = max(1, devices // 8) if devices > pops else 0
        onus = max(0, devices - pops - olts)
        for p in range(1, pops + 1):
            self.forms["radpop"][str(p)] = {
                "id": str(p),
                "pop": f"POP-{STATES[p % len(STATES)]}-{p:02d}",
                "ip": self._ip(f"10.0.{p}.1", 2, p),
                "ativo": "S",
                "ultima_atualizacao": self._stamp(p),
            }
        for n in range(1, nas + 1):
            self.forms["concentrador"][str(n)] = {
                "id": str(n),
                "nome": f"BNG-{n:02d}",
                "ip": self._ip(f"10.255.0.{n}", 1, n),
                "tipo": VENDORS[(n - 1) % len(VENDORS)],
                "secret": f"sim-secret-{rng.randrange(10**8):08d}",
                "id_pop": str(1 + (n - 1) % pops) if pops else "0",
                "ativo": "S",
                "ultima_atualizacao": self._stamp(n),
            }
        for o in range(1, olts + 1):
            pop = 1 + (o - 1) % pops
            self.forms["radpop_radio"][str(o)] = {
                "id": str(o),
                "descricao": f"OLT-{o:03d}",
                "tipo": "OLT",
                "ip": self._ip(f"10.1.{pop}.{o % 250 + 1}", 3, o),
                "id_pop": str(pop),
                "ativo": "S",
                "ultima_atualizacao": self._stamp(o),
            }
        for c in range(1, customers + 1):
            self._generate_customer(c, nas)
        for u in range(1, onus + 1):
            olt = 1 + (u - 1) % olts
            login = str(u) if u <= customers else "0"
            mac = ":".join(f"{rng.randrange(256):02X}" for _ in range(6))
            self.forms["radpop_radio_cliente_fibra"][str(u)] = {
                "id": str(u),
                "nome": f"ONU-{u:05d}",
                "mac": mac,
                "ip": self._ip("", 10 + u // 250, u % 250 + 1) if u < 60_000 else "",
                "id_transmissor": str(olt),
                "id_pop": self.forms["radpop_radio"][str(olt)]["id_pop"],
                "id_login": login,
                "id_contrato": login,
                "sinal_rx": f"-{rng.randrange(15, 27)}.{rng.randrange(100):02d}",
                "ultima_atualizacao": self._stamp(u),
            }

    def _generate_customer(self, c: int, nas: int) -> None:
        rng = self._rng
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        cpf = f"{rng.randrange(10**9):09d}{rng.randrange(100):02d}"
        self.forms["cliente"][str(c)] = {
            "id": str(c),
            "razao": f"{first} {last}",
            "tipo_pessoa": "F",
            "cnpj_cpf": f"{cpf[:3]}.{cpf[3:6]}.{cpf[6:9]}-{cpf[9:]}",
            "email": f"{first.lower()}.{last.lower()}{c}@example.com.br",
            "telefone_celular": f"(11) 9{rng.randrange(10**8):08d}",
            "cidade": str(rng.randrange(1, 5000)),
            "uf": rng.choice(STATES),
            "ativo": "S",
            "aceita_marketing": rng.choice("SN"),
            "ultima_atualizacao": self._stamp(c),
        }
        plan_id, plan_name, _down, _up, price = rng.choice(PLANS)
        internet = rng.choices(("A", "CA", "FA"), weights=(90, 6, 4))[0]
        self.forms["cliente_contrato"][str(c)] = {
            "id": str(c),
            "id_cliente": str(c),
            "id_vd_contrato": plan_id,
            "contrato": plan_name.replace("_", " "),
            "status": "A",
            "status_internet": internet,
            "valor": price,
            "desbloqueio_confianca_ativo": "N",
            "ultima_atualizacao": self._stamp(c),
        }
        fixed = rng.random() < 0.1
        self.forms["radusuarios"][str(c)] = {
            "id": str(c),
            "login": f"cliente{c}@sim",
            "senha": f"{rng.randrange(16**10):010x}",
            "ativo": "N" if internet == "CA" else "S",
            "id_contrato": str(c),
            "id_cliente": str(c),
            "id_grupo": plan_id,
            "autenticacao": "H" if rng.random() < 0.05 else "L",
            "ip": f"100.64.{c // 250}.{c % 250 + 1}" if fixed else "",
            "fixar_ip": "S" if fixed else "N",
            "pd_ipv6": f"2804:{c:x}::/56",
            "mac": "",
            "autenticacao_por_mac": "N",
            "login_simultaneo": "1",
            "id_concentrador": str(1 + c % nas) if nas else "0",
            "online": "N",
            "ultima_atualizacao": self._stamp(c),
        }
