"""RFC 5176 Dynamic Authorization packets, encoded and checked by hand (no pyrad).

Only the few attributes a CoA/Disconnect-Request carries are needed (session identification,
rate limit, pool), so they are encoded directly here; ``pyrad_adapter`` stays the gateway's only
pyrad import. The tests check every packet with pyrad's own ``CoAPacket.VerifyCoARequest`` and
answer with pyrad-built replies.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from producers.radius.errors import MalformedPacket

DISCONNECT_REQUEST = 40
DISCONNECT_ACK = 41
DISCONNECT_NAK = 42
COA_REQUEST = 43
COA_ACK = 44
COA_NAK = 45

_ACKS = {DISCONNECT_ACK, COA_ACK}
_NAKS = {DISCONNECT_NAK, COA_NAK}

_MESSAGE_AUTHENTICATOR = 80
_ERROR_CAUSE = 101
_VENDOR_SPECIFIC = 26
_MIKROTIK = 14988
_HUAWEI = 2011
_ERX = 4874
_CISCO = 9

# name -> (type, kind); vendor attributes as (vendor, type, kind).
_STANDARD: dict[str, tuple[int, str]] = {
    "User-Name": (1, "string"),
    "NAS-IP-Address": (4, "ipaddr"),
    "Framed-IP-Address": (8, "ipaddr"),
    "Filter-Id": (11, "string"),
    "Session-Timeout": (27, "integer"),
    "Acct-Session-Id": (44, "string"),
    "Event-Timestamp": (55, "integer"),
    "Framed-Pool": (88, "string"),
}
_VENDOR: dict[str, tuple[int, int, str]] = {
    "Mikrotik-Rate-Limit": (_MIKROTIK, 8, "string"),
    "Mikrotik-Address-List": (_MIKROTIK, 19, "string"),
    # Other vendors' rate limits (producers/radius/vendors.py).
    "Huawei-Input-Average-Rate": (_HUAWEI, 2, "integer"),
    "Huawei-Output-Average-Rate": (_HUAWEI, 5, "integer"),
    "ERX-Service-Activate:1": (_ERX, 65, "tag1"),  # RFC 2868 tag 1 before the string
    "Cisco-AVPair": (_CISCO, 1, "string"),
}

AttributeValue = str | int | tuple[str, ...]


def _value(kind: str, value: str | int) -> bytes:
    if kind == "tag1":
        return b"\x01" + str(value).encode()
    if kind == "integer":
        return struct.pack("!I", int(value))
    if kind == "ipaddr":
        return ipaddress.IPv4Address(str(value)).packed
    return str(value).encode()


def encode_attribute(name: str, value: AttributeValue) -> bytes:
    """One attribute; a tuple value is one attribute per element (e.g. two Cisco-AVPair)."""
    if isinstance(value, tuple):
        return b"".join(encode_attribute(name, one) for one in value)
    if name in _STANDARD:
        code, kind = _STANDARD[name]
        data = _value(kind, value)
        if len(data) > 253:
            raise ValueError(f"{name} value longer than 253 bytes")
        return bytes((code, len(data) + 2)) + data
    if name in _VENDOR:
        vendor, vtype, kind = _VENDOR[name]
        data = _value(kind, value)
        if len(data) > 247:
            raise ValueError(f"{name} value longer than 247 bytes")
        inner = bytes((vtype, len(data) + 2)) + data
        return bytes((_VENDOR_SPECIFIC, len(inner) + 6)) + struct.pack("!I", vendor) + inner
    raise KeyError(f"attribute {name!r} is not supported in a CoA/Disconnect-Request")


def build_request(
    code: int,
    identifier: int,
    secret: bytes,
    attributes: Mapping[str, AttributeValue],
    *,
    message_authenticator: bool = True,
) -> bytes:
    """A CoA-Request or Disconnect-Request. Request Authenticator as RFC 5176 3.3 (MD5 over the
    packet with a zero authenticator, then the secret); Message-Authenticator (RFC 3579 3.2,
    computed with a zero authenticator) first when asked for."""
    if code not in (COA_REQUEST, DISCONNECT_REQUEST):
        raise ValueError(f"code {code} is not a CoA/Disconnect-Request")
    body = b"".join(encode_attribute(n, v) for n, v in attributes.items())
    zero = bytes(16)
    if message_authenticator:
        length = 20 + 18 + len(body)
        header = struct.pack("!BBH", code, identifier & 0xFF, length)
        mac = hmac.new(secret, header + zero + b"\x50\x12" + zero + body, "md5").digest()
        body = b"\x50\x12" + mac + body
    else:
        header = struct.pack("!BBH", code, identifier & 0xFF, 20 + len(body))
    authenticator = hashlib.md5(header + zero + body + secret).digest()  # noqa: S324 - RFC 5176
    return header + authenticator + body


@dataclass(frozen=True, slots=True)
class CoaReply:
    code: int
    identifier: int
    error_cause: int | None

    @property
    def ack(self) -> bool:
        return self.code in _ACKS


def parse_reply(data: bytes, request: bytes, secret: bytes) -> CoaReply:
    """Check a NAS's answer to ``request``: matching identifier, an ACK/NAK code for the request's
    type, a valid Response Authenticator and (when present) Message-Authenticator. Anything else
    raises ``MalformedPacket`` (the sender keeps waiting: a forged or stray datagram must not end
    the exchange)."""
    if len(data) < 20:
        raise MalformedPacket("reply shorter than a RADIUS header")
    code, identifier, length = struct.unpack_from("!BBH", data)
    if length < 20 or length > len(data):
        raise MalformedPacket(f"reply length field {length} does not fit {len(data)} bytes")
    data = data[:length]
    if identifier != request[1]:
        raise MalformedPacket("reply identifier does not match the request")
    expected = {
        DISCONNECT_REQUEST: (DISCONNECT_ACK, DISCONNECT_NAK),
        COA_REQUEST: (COA_ACK, COA_NAK),
    }
    if code not in expected.get(request[0], ()):
        raise MalformedPacket(f"reply code {code} does not answer request code {request[0]}")
    request_auth = request[4:20]
    check = hashlib.md5(data[:4] + request_auth + data[20:] + secret).digest()  # noqa: S324
    if not hmac.compare_digest(check, data[4:20]):
        raise MalformedPacket("bad Response Authenticator (wrong secret?)")
    error_cause: int | None = None
    pos = 20
    while pos < length:
        if pos + 2 > length:
            raise MalformedPacket("truncated attribute")
        atype, alen = data[pos], data[pos + 1]
        if alen < 2 or pos + alen > length:
            raise MalformedPacket("bad attribute length")
        value = data[pos + 2 : pos + alen]
        if atype == _ERROR_CAUSE and len(value) == 4:
            error_cause = struct.unpack("!I", value)[0]
        elif atype == _MESSAGE_AUTHENTICATOR:
            if len(value) != 16:
                raise MalformedPacket("bad Message-Authenticator length")
            blanked = data[:pos] + b"\x50\x12" + bytes(16) + data[pos + 18 :]
            signed = blanked[:4] + request_auth + blanked[20:]
            mac = hmac.new(secret, signed, "md5").digest()
            if not hmac.compare_digest(mac, value):
                raise MalformedPacket("bad Message-Authenticator in reply")
        pos += alen
    return CoaReply(code=code, identifier=identifier, error_cause=error_cause)
