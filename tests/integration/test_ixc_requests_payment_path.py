"""Issue 8 item 3, the loop closed locally: a signed PIX webhook -> ingress -> requests.high ->
worker -> IXC simulator settles the invoice and unblocks the contract -> the poller's next pass
emits ContractStatusChanged -> the CoA worker sends a CoA-Request -> the NAS ACKs it; and the
worker's payment-confirmation message on the campaigns' transactional lane, one per payment.

The same code as ``make bench-requests-payment`` (which measures the latency); here only that
every payment arrives, and is confirmed to its subscriber exactly once."""

from __future__ import annotations

import argparse

import pytest

from bench.requests_payment import measure
from filas.settings import Settings

pytestmark = pytest.mark.integration


async def test_every_signed_payment_ends_in_a_coa_ack_and_one_message(platform: Settings) -> None:
    args = argparse.Namespace(payments=4, rate=4.0, poll_interval=0.3)
    result = await measure(platform, args)
    assert result.sent == 4
    assert len(result.nas_ack_ms) == 4
    assert result.notices == {str(c): 1 for c in range(1, 5)}
