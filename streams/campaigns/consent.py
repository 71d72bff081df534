"""LGPD consent and opt-out rule, one pure function shared by fan-out and (at send) delivery.

``skip_reason`` answers why a message of ``purpose`` on ``channel`` must NOT go to a customer,
or None when it may: a channel opt-out refuses every purpose; ``marketing`` also needs
``Customer.marketing_consent`` and no marketing opt-out (decision 0072). Delivery workers can
call it with the message's ``purpose`` and their own view of ``ixc.customers`` /
``campaign.opt-outs`` to honour a choice made after the fan-out.
"""

from __future__ import annotations

from streams.campaigns.state import OptOutEntry

NO_CONSENT = "no_consent"
OPT_OUT = "opt_out"


def skip_reason(
    purpose: str, channel: str, marketing_consent: bool, opt_out: OptOutEntry | None
) -> str | None:
    if opt_out is not None and channel in opt_out.channels:
        return OPT_OUT
    if purpose == "marketing":
        if opt_out is not None and opt_out.marketing:
            return OPT_OUT
        if not marketing_consent:
            return NO_CONSENT
    return None
