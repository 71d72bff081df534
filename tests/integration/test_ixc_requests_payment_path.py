"""Issue 8 item 3, the loop closed locally: a signed PIX webhook -> ingress -> requests.high ->
worker -> IXC simulator settles the invoice and unblocks the contract -> the poller's next pass
emits ContractStatusChanged -> the CoA worker sends a CoA-Request -> the NAS ACKs it.

The same code as ``make bench-requests-payment`` (which measures the latency); here only that
every payment arrives."""

from __future__ import annotations

import argparse

import pytest

from bench.requests_payment import measure
from filas.settings import Settings

pytestmark = pytest.mark.integration


async def test_every_signed_payment_ends_in_a_coa_ack_at_the_nas(platform: Settings) -> None:
    args = argparse.Namespace(payments=4, rate=4.0, poll_interval=0.3)
    latencies, sent = await measure(platform, args)
    assert sent == 4
    assert len(latencies) == 4
