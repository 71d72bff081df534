"""Scenario planning with fake command sets: steps skip with a reason, dependants follow, and
required steps fail loudly; plus the simulator's loopback address plan the run relies on."""

from __future__ import annotations

import click
import pytest

from filas.homologation.run import STEPS, _can_netns
from filas.homologation.scenario import Step, available_commands, format_plan, plan
from producers.ixc.simulator import SimulatedIsp

EVERYTHING = {c for s in STEPS for c in s.needs}


def reasons(planned: list) -> dict[str, str | None]:  # type: ignore[type-arg]
    return {p.step.name: p.skip_reason for p in planned}


def test_with_every_processor_only_the_steps_turned_off_skip() -> None:
    got = reasons(plan(STEPS, EVERYTHING))
    if _can_netns():
        assert {k for k, v in got.items() if v} == set()
    else:
        assert {k for k, v in got.items() if v} == {"outage_alert"}
        assert "network namespace" in str(got["outage_alert"])


def test_a_missing_processor_skips_its_step_and_the_steps_after_it() -> None:
    got = reasons(plan(STEPS, EVERYTHING - {"radius coa"}))
    assert got["gateway"] == "processor not available yet: filas radius coa"
    assert got["logins"] == "needs step(s) that did not run: gateway"
    assert got["storm"] == "needs step(s) that did not run: logins"
    assert got["campaign"] is None  # independent of RADIUS


def test_service_requests_need_the_ingress_and_the_workers() -> None:
    got = reasons(plan(STEPS, EVERYTHING - {"requests work"}))
    assert got["requests"] == "processor not available yet: filas requests work"
    assert got["payments"] is None
    assert got["campaign"] is None


def test_a_required_step_cannot_be_skipped() -> None:
    with pytest.raises(click.UsageError, match="simulator"):
        plan(STEPS, EVERYTHING - {"ixc simulate"})


def test_summary_needs_the_sink() -> None:
    got = reasons(plan(STEPS, EVERYTHING - {"sink run"}))
    assert got["summary"] == "needs step(s) that did not run: sink"


def test_plan_lines_show_skip_reasons() -> None:
    steps = (Step("a", "Alpha", ("x run",)), Step("b", "Beta"))
    lines = format_plan(plan(steps, set()))
    assert lines == [
        "   1. [SKIP] Alpha  (processor not available yet: filas x run)",
        "   2. [run ] Beta",
    ]


def test_available_commands_walks_nested_groups() -> None:
    @click.group()
    def root() -> None: ...

    @root.group("radius")
    def radius() -> None: ...

    @radius.command("serve")
    def serve() -> None: ...

    @root.command("up")
    def up() -> None: ...

    assert available_commands(root) == {"radius", "radius serve", "up"}


def test_the_real_cli_has_the_core_steps() -> None:
    from filas.cli.main import cli

    have = available_commands(cli)
    assert {"homologation run", "ixc simulate", "ixc poll", "radius serve", "sink run"} <= have


def test_loopback_address_plan() -> None:
    isp = SimulatedIsp(
        seed=1, customers=30, devices=60, nas=4, address_plan="loopback", loopback_octet=42
    )
    assert [r["ip"] for r in isp.records("concentrador")] == [
        "127.42.1.1",
        "127.42.1.2",
        "127.42.1.3",
        "127.42.1.4",
    ]
    assert all(r["ip"].startswith("127.42.2.") for r in isp.records("radpop"))
    assert all(r["ip"].startswith("127.42.3.") for r in isp.records("radpop_radio"))
    assert all(r["ip"].startswith("127.42.10.") for r in isp.records("radpop_radio_cliente_fibra"))
    # Same seed, same ISP otherwise: only addresses differ from the private plan.
    private = SimulatedIsp(seed=1, customers=30, devices=60, nas=4)
    assert private.records("radusuarios") == isp.records("radusuarios")
    assert [r["secret"] for r in private.records("concentrador")] == [
        r["secret"] for r in isp.records("concentrador")
    ]
    assert private.records("concentrador")[0]["ip"] == "10.255.0.1"
    with pytest.raises(ValueError, match="address_plan"):
        SimulatedIsp(address_plan="public")
