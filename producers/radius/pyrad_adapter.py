"""The one module that imports pyrad (untyped): decode requests, check credentials, encode replies.

Everything pyrad returns is turned into plain, typed values here; every pyrad or struct error on
received bytes becomes ``MalformedPacket``. The gateway never touches a pyrad object.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyrad import packet as rp
from pyrad.dictionary import Dictionary

from producers.radius.errors import MalformedPacket
from producers.radius.mschap import MsChapV2

DICTIONARY_PATH = Path(__file__).with_name("dictionary")

ACCESS_REQUEST = 1
ACCESS_ACCEPT = 2
ACCESS_REJECT = 3
ACCOUNTING_REQUEST = 4
ACCOUNTING_RESPONSE = 5

_MIN_LENGTH = 20
_MAX_LENGTH = 4096  # RFC 2865 section 3
_MESSAGE_AUTHENTICATOR = 80
_USER_PASSWORD = 2
_CHAP_PASSWORD = 3
_PROXY_STATE = 33
_SECRET_ATTRIBUTES = frozenset(
    {"User-Password", "CHAP-Password", "Message-Authenticator", "MS-CHAP2-Response"}
)
_EMPTY_MESSAGE_AUTHENTICATOR = b"\x50\x12" + bytes(16)

Scalar = str | int
AttributeValue = Scalar | tuple[str, ...]
ReplyAttributes = Mapping[str, AttributeValue]


@dataclass(frozen=True, slots=True)
class Header:
    code: int
    identifier: int
    authenticator: bytes


def peek_header(data: bytes) -> Header:
    """The fixed 20-byte header, checked against RFC 2865 section 3 (no secret needed)."""
    if len(data) < _MIN_LENGTH:
        raise MalformedPacket(f"{len(data)} bytes is shorter than a RADIUS header")
    code, identifier, length = struct.unpack_from("!BBH", data)
    if length < _MIN_LENGTH or length > _MAX_LENGTH or length > len(data):
        raise MalformedPacket(f"length field {length} does not fit {len(data)} received bytes")
    return Header(code, identifier, bytes(data[4:20]))


@dataclass(frozen=True, slots=True)
class RadiusRequest:
    """A decoded request: attributes by dictionary name (values decoded; unknown ones skipped)."""

    code: int
    identifier: int
    authenticator: bytes
    attributes: Mapping[str, tuple[Scalar, ...]]
    has_message_authenticator: bool
    packet: Any = field(repr=False, compare=False)

    def first(self, name: str) -> Scalar | None:
        values = self.attributes.get(name)
        return values[0] if values else None

    def text(self, name: str) -> str | None:
        value = self.first(name)
        return None if value is None else str(value)

    def number(self, name: str) -> int | None:
        value = self.first(name)
        return value if isinstance(value, int) else None


class RadiusCodec:
    """Decode/encode with one parsed dictionary (parsed once at start-up)."""

    def __init__(self, dictionary_path: Path = DICTIONARY_PATH) -> None:
        self._dict = Dictionary(str(dictionary_path))
        self._encoded: dict[tuple[str, str | int], bytes] = {}

    def decode(self, data: bytes, secret: bytes) -> RadiusRequest:
        header = peek_header(data)
        cls = rp.AcctPacket if header.code == ACCOUNTING_REQUEST else rp.AuthPacket
        try:
            pkt = cls(packet=bytes(data), secret=secret, dict=self._dict)
        except Exception as exc:  # pyrad raises PacketError, struct.error, KeyError, ...
            raise MalformedPacket(f"undecodable attributes: {type(exc).__name__}: {exc}") from exc
        attributes: dict[str, tuple[Scalar, ...]] = {}
        for key in list(pkt.keys()):
            if not isinstance(key, str):
                continue  # not in our dictionary
            if key in _SECRET_ATTRIBUTES:
                continue
            try:
                values = tuple(_plain(v) for v in pkt[key])
            except Exception:  # noqa: S112 - one undecodable attribute must not lose the packet
                continue
            attributes[key] = values
        return RadiusRequest(
            code=header.code,
            identifier=header.identifier,
            authenticator=header.authenticator,
            attributes=attributes,
            has_message_authenticator=bool(pkt.message_authenticator),
            packet=pkt,
        )

    @staticmethod
    def message_authenticator_valid(request: RadiusRequest) -> bool:
        """HMAC-MD5 check of Message-Authenticator (RFC 2869 5.14); False when absent or bad."""
        if not request.has_message_authenticator:
            return False
        try:
            return bool(request.packet.verify_message_authenticator())
        except Exception:
            return False

    @staticmethod
    def accounting_authenticator_valid(request: RadiusRequest) -> bool:
        """RFC 2866 Request Authenticator of an Accounting-Request (proves the shared secret)."""
        try:
            return bool(request.packet.VerifyAcctRequest())
        except Exception:
            return False

    @staticmethod
    def credential(request: RadiusRequest) -> str:
        """Which credential attribute the request carries: PAP, CHAP, MSCHAPV2 or UNKNOWN."""
        if request.packet.get(_USER_PASSWORD):
            return "PAP"
        if request.packet.get(_CHAP_PASSWORD):
            return "CHAP"
        if "MS-CHAP2-Response" in request.attributes or request.packet.get("MS-CHAP2-Response"):
            return "MSCHAPV2"
        return "UNKNOWN"

    @staticmethod
    def mschap2(request: RadiusRequest) -> MsChapV2 | None:
        """The MS-CHAP-Challenge / MS-CHAP2-Response pair (RFC 2548), None when incomplete."""
        try:
            challenge = request.packet.get("MS-CHAP-Challenge")
            response = request.packet.get("MS-CHAP2-Response")
        except Exception:
            return None
        if not challenge or not response:
            return None
        if not isinstance(challenge[0], bytes) or not isinstance(response[0], bytes):
            return None
        return MsChapV2.parse(challenge[0], response[0])

    @staticmethod
    def secret(request: RadiusRequest) -> bytes:
        secret: bytes = request.packet.secret
        return secret

    @staticmethod
    def check_pap(request: RadiusRequest, password: str) -> bool:
        raw = request.packet.get(_USER_PASSWORD)
        if not raw:
            return False
        try:
            clear: str = request.packet.PwDecrypt(raw[0])
        except Exception:
            return False
        return hmac.compare_digest(clear.encode(), password.encode())

    @staticmethod
    def check_chap(request: RadiusRequest, password: str) -> bool:
        try:
            return bool(request.packet.VerifyChapPasswd(password.encode()))
        except Exception:
            return False

    def access_reply(
        self,
        request: RadiusRequest,
        *,
        accept: bool,
        attributes: ReplyAttributes,
        encoded: bytes = b"",
    ) -> bytes:
        """Access-Accept/Reject, Message-Authenticator first (BlastRADIUS), Proxy-State copied
        (RFC 2865 5.33). Attributes are encoded by pyrad once per (name, value) and cached: the
        values repeat (pools, rates, timeouts), and this is the gateway's hot path. A tuple value
        is one attribute per element; ``encoded`` (per-request attributes, e.g. MS-CHAPv2's
        success and keys) is appended as is."""
        parts: list[bytes] = []
        for name, value in attributes.items():
            if isinstance(value, tuple):
                parts.extend(self._attribute(name, one) for one in value)
            else:
                parts.append(self._attribute(name, value))
        body = b"".join(parts) + encoded
        return self._sign(
            ACCESS_ACCEPT if accept else ACCESS_REJECT, request, body, message_authenticator=True
        )

    def accounting_reply(self, request: RadiusRequest) -> bytes:
        return self._sign(ACCOUNTING_RESPONSE, request, b"", message_authenticator=False)

    def _sign(
        self, code: int, request: RadiusRequest, body: bytes, *, message_authenticator: bool
    ) -> bytes:
        secret: bytes = request.packet.secret
        for state in request.packet.get(_PROXY_STATE) or ():
            body += bytes((_PROXY_STATE, len(state) + 2)) + state
        if message_authenticator:
            length = 20 + 18 + len(body)
            header = struct.pack("!BBH", code, request.identifier, length)
            mac = hmac.new(secret, digestmod="md5")
            mac.update(header + request.authenticator + _EMPTY_MESSAGE_AUTHENTICATOR + body)
            body = b"\x50\x12" + mac.digest() + body
        else:
            header = struct.pack("!BBH", code, request.identifier, 20 + len(body))
        response = hashlib.md5(header + request.authenticator + body + secret).digest()  # noqa: S324 - RFC 2865
        return header + response + body

    def _attribute(self, name: str, value: str | int) -> bytes:
        key = (name, value)
        encoded = self._encoded.get(key)
        if encoded is None:
            pkt = rp.Packet(secret=b"", dict=self._dict)
            pkt.AddAttribute(name, value)
            encoded = bytes(pkt._PktEncodeAttributes())
            if len(self._encoded) > 100_000:
                self._encoded.clear()
            self._encoded[key] = encoded
        return encoded

    def build_request(
        self,
        code: int,
        secret: bytes,
        attributes: Mapping[str, Scalar | bytes],
        *,
        message_authenticator: bool = True,
        password: str | None = None,
        identifier: int | None = None,
    ) -> bytes:
        """Encode a request as a NAS would (tests, fuzz corpus, benchmark load)."""
        pkt: Any
        if code == ACCOUNTING_REQUEST:
            pkt = rp.AcctPacket(id=identifier, secret=secret, dict=self._dict)
        else:
            pkt = rp.AuthPacket(code=code, id=identifier, secret=secret, dict=self._dict)
        for name, value in attributes.items():
            pkt.AddAttribute(name, value)
        if password is not None:
            pkt["User-Password"] = pkt.PwCrypt(password)
        if message_authenticator:
            pkt.add_message_authenticator()
        raw: bytes = pkt.RequestPacket()
        return raw

    def verify_reply(self, request: bytes, reply: bytes, secret: bytes) -> bool:
        """pyrad's own check of a reply (Response Authenticator, Message-Authenticator required,
        Proxy-State): the tests hold our hand-signed replies to it."""
        sent = rp.AuthPacket(packet=request, secret=secret, dict=self._dict)
        got = rp.Packet(packet=reply, secret=secret, dict=self._dict)
        return bool(sent.VerifyReply(got, reply, enforce_ma=sent.code == ACCESS_REQUEST))

    def decode_reply(self, data: bytes, secret: bytes) -> dict[str, list[Scalar]]:
        """Attributes of a reply (unit tests): name -> values, plus '_code'."""
        pkt = rp.Packet(packet=data, secret=secret, dict=self._dict)
        out: dict[str, list[Scalar]] = {"_code": [pkt.code]}
        for key in list(pkt.keys()):
            if isinstance(key, str):
                out[key] = [_plain(v) for v in pkt[key]]
        return out


def _plain(value: Any) -> Scalar:
    if isinstance(value, int | str):
        return value
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)
