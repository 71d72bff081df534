"""Internationalised mailboxes (IXC data has "fábio.costa@..."): sent through a relay that offers
SMTPUTF8, a permanent failure with the reason through one that does not, never a worker crash."""

from __future__ import annotations

import pytest

from consumers.delivery.channels import Outcome, OutgoingMessage
from consumers.delivery.peers import SmtpSink
from consumers.delivery.smtp import SmtpChannel
from filas.settings import SmtpChannelSettings

pytestmark = pytest.mark.integration


def _message(address: str) -> OutgoingMessage:
    return OutgoingMessage(
        message_id="m-utf8-1",
        campaign_id="c-1",
        recipient_id="r-1",
        address=address,
        subject="Fatura disponível",
        body="Olá, sua fatura já está disponível.",
    )


async def test_a_non_ascii_mailbox_is_sent_when_the_relay_offers_smtputf8() -> None:
    with SmtpSink(smtputf8=True) as sink:
        channel = SmtpChannel(SmtpChannelSettings(port=sink.port, timeout_s=10))
        try:
            result = await channel.send(_message("fábio.costa@example.com.br"))
            ascii_result = await channel.send(_message("joao@example.com.br"))
        finally:
            await channel.close()
        assert result.outcome is Outcome.SENT, result.text
        assert ascii_result.outcome is Outcome.SENT, ascii_result.text
        assert [r.recipients for r in sink.received] == [
            ("fábio.costa@example.com.br",),
            ("joao@example.com.br",),
        ]


async def test_a_non_ascii_mailbox_fails_permanently_when_the_relay_lacks_smtputf8() -> None:
    with SmtpSink(smtputf8=False) as sink:
        channel = SmtpChannel(SmtpChannelSettings(port=sink.port, timeout_s=10))
        try:
            result = await channel.send(_message("fábio.costa@example.com.br"))
            after = await channel.send(_message("joao@example.com.br"))
        finally:
            await channel.close()
        assert result.outcome is Outcome.PERMANENT
        assert "SMTPUTF8" in (result.text or "")
        # The channel stays usable for the next recipient.
        assert after.outcome is Outcome.SENT, after.text
        assert [r.recipients for r in sink.received] == [("joao@example.com.br",)]
