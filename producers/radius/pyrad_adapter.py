"""The one module that imports pyrad (untyped): decode requests, check credentials, encode replies.

Everything pyrad returns is turned into plain, typed values here; every pyrad or struct error on
received bytes becomes ``MalformedPacket``. The gateway never touches a pyrad object.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyrad import packet as rp
from pyrad import tools
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
_CHAP_CHALLENGE = 60
_VENDOR_SPECIFIC = 26
_MS_CHAP_CHALLENGE = (311, 11)
_MS_CHAP2_RESPONSE = (311, 25)
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
    """A decoded request: attributes by dictionary name (values decoded; unknown ones skipped),
    plus the raw values the credential and signature checks need."""

    code: int
    identifier: int
    authenticator: bytes
    attributes: Mapping[str, tuple[Scalar, ...]]
    has_message_authenticator: bool
    raw: bytes = field(repr=False, compare=False)
    secret: bytes = field(repr=False, compare=False)
    # Standard attribute type -> raw values; (vendor id, type) -> raw values.
    raw_values: Mapping[int, list[bytes]] = field(repr=False, compare=False)
    raw_vendor: Mapping[tuple[int, int], list[bytes]] = field(repr=False, compare=False)
    message_authenticator_offset: int = field(default=-1, repr=False, compare=False)

    def first(self, name: str) -> Scalar | None:
        values = self.attributes.get(name)
        return values[0] if values else None

    def text(self, name: str) -> str | None:
        value = self.first(name)
        return None if value is None else str(value)

    def number(self, name: str) -> int | None:
        value = self.first(name)
        return value if isinstance(value, int) else None


# (name, dictionary type, encoded value -> VALUE name); built from the pyrad dictionary.
_AttrInfo = tuple[str, str, dict[bytes, str]]


class RadiusCodec:
    """Decode/encode with one parsed dictionary (parsed once at start-up).

    Requests are decoded by hand (one pass over the attribute TLVs, values decoded by the
    dictionary's types, the same values pyrad returns): building a pyrad packet per request was
    half of the gateway's per-request cost. Replies are encoded with pyrad, once per value."""

    def __init__(self, dictionary_path: Path = DICTIONARY_PATH) -> None:
        self._dict = Dictionary(str(dictionary_path))
        self._encoded: dict[tuple[str, str | int], bytes] = {}
        self._standard: dict[int, _AttrInfo] = {}
        self._vendor: dict[tuple[int, int], _AttrInfo] = {}
        for name, attr in self._dict.attributes.items():
            if name in _SECRET_ATTRIBUTES or attr.code is None:
                continue
            names = {bytes(v): str(k) for k, v in attr.values.forward.items()}
            info = (str(name), str(attr.type), names)
            if attr.vendor:
                vendor_id = int(self._dict.vendors.GetForward(attr.vendor))
                self._vendor[(vendor_id, int(attr.code))] = info
            else:
                self._standard[int(attr.code)] = info

    def decode(self, data: bytes, secret: bytes) -> RadiusRequest:
        header = peek_header(data)
        length = (data[2] << 8) | data[3]
        raw = bytes(data[:length])  # octets past Length are padding (RFC 2865 section 3)
        values: dict[str, list[Scalar]] = {}
        raw_values: dict[int, list[bytes]] = {}
        raw_vendor: dict[tuple[int, int], list[bytes]] = {}
        ma_offset = -1
        standard = self._standard
        pos = 20
        while pos < length:
            if pos + 2 > length:
                raise MalformedPacket("truncated attribute header")
            atype = raw[pos]
            alen = raw[pos + 1]
            if alen < 2 or pos + alen > length:
                raise MalformedPacket(f"attribute {atype} has a bad length {alen}")
            value = raw[pos + 2 : pos + alen]
            if atype == _VENDOR_SPECIFIC:
                self._vendor_specific(value, values, raw_vendor)
            else:
                if atype == _MESSAGE_AUTHENTICATOR and alen == 18 and ma_offset < 0:
                    ma_offset = pos
                raw_values.setdefault(atype, []).append(value)
                info = standard.get(atype)
                if info is not None:
                    _add(values, info, value)
            pos += alen
        return RadiusRequest(
            code=header.code,
            identifier=header.identifier,
            authenticator=header.authenticator,
            attributes={k: tuple(v) for k, v in values.items()},
            has_message_authenticator=ma_offset >= 0,
            raw=raw,
            secret=secret,
            raw_values=raw_values,
            raw_vendor=raw_vendor,
            message_authenticator_offset=ma_offset,
        )

    def _vendor_specific(
        self,
        value: bytes,
        values: dict[str, list[Scalar]],
        raw_vendor: dict[tuple[int, int], list[bytes]],
    ) -> None:
        """RFC 2865 5.26 with the usual 1-byte type / 1-byte length sub-attributes; a VSA that
        does not parse that way is kept opaque (as pyrad does), never fatal."""
        if len(value) < 6:
            return
        vendor_id = int.from_bytes(value[:4], "big")
        subs: list[tuple[int, bytes]] = []
        pos, end = 4, len(value)
        while pos < end:
            if pos + 2 > end:
                return
            vtype, vlen = value[pos], value[pos + 1]
            if vlen < 2 or pos + vlen > end:
                return
            subs.append((vtype, value[pos + 2 : pos + vlen]))
            pos += vlen
        for vtype, sub in subs:
            raw_vendor.setdefault((vendor_id, vtype), []).append(sub)
            info = self._vendor.get((vendor_id, vtype))
            if info is not None:
                _add(values, info, sub)

    @staticmethod
    def message_authenticator_valid(request: RadiusRequest) -> bool:
        """HMAC-MD5 check of Message-Authenticator (RFC 2869 5.14, RFC 3579 3.2); False when
        absent or bad. Access-Request: over the packet as sent; Accounting-Request: with a zero
        Request Authenticator."""
        offset = request.message_authenticator_offset
        if offset < 0:
            return False
        raw = request.raw
        vector = raw[4:20] if request.code == ACCESS_REQUEST else bytes(16)
        signed = raw[:4] + vector + raw[20 : offset + 2] + bytes(16) + raw[offset + 18 :]
        mac = hmac.digest(request.secret, signed, "md5")
        return hmac.compare_digest(mac, raw[offset + 2 : offset + 18])

    @staticmethod
    def accounting_authenticator_valid(request: RadiusRequest) -> bool:
        """RFC 2866 Request Authenticator of an Accounting-Request (proves the shared secret)."""
        raw = request.raw
        digest = hashlib.md5(raw[:4] + bytes(16) + raw[20:] + request.secret).digest()  # noqa: S324 - RFC 2866
        return hmac.compare_digest(digest, raw[4:20])

    @staticmethod
    def credential(request: RadiusRequest) -> str:
        """Which credential attribute the request carries: PAP, CHAP, MSCHAPV2 or UNKNOWN."""
        if _USER_PASSWORD in request.raw_values:
            return "PAP"
        if _CHAP_PASSWORD in request.raw_values:
            return "CHAP"
        if _MS_CHAP2_RESPONSE in request.raw_vendor:
            return "MSCHAPV2"
        return "UNKNOWN"

    @staticmethod
    def mschap2(request: RadiusRequest) -> MsChapV2 | None:
        """The MS-CHAP-Challenge / MS-CHAP2-Response pair (RFC 2548), None when incomplete."""
        challenge = request.raw_vendor.get(_MS_CHAP_CHALLENGE)
        response = request.raw_vendor.get(_MS_CHAP2_RESPONSE)
        if not challenge or not response:
            return None
        return MsChapV2.parse(challenge[0], response[0])

    @staticmethod
    def check_pap(request: RadiusRequest, password: str) -> bool:
        """RFC 2865 5.2: undo the MD5 chain over the secret and the Request Authenticator."""
        values = request.raw_values.get(_USER_PASSWORD)
        if not values or not values[0] or len(values[0]) % 16:
            return False
        hidden = values[0]
        clear = bytearray()
        last = request.authenticator
        for i in range(0, len(hidden), 16):
            block = hidden[i : i + 16]
            stream = hashlib.md5(request.secret + last).digest()  # noqa: S324 - RFC 2865
            clear += (int.from_bytes(block) ^ int.from_bytes(stream)).to_bytes(16)
            last = block
        return hmac.compare_digest(bytes(clear).rstrip(b"\x00"), password.encode())

    @staticmethod
    def check_chap(request: RadiusRequest, password: str) -> bool:
        """RFC 2865 2.2: MD5(CHAP ident + password + challenge); the challenge is CHAP-Challenge
        when present, else the Request Authenticator."""
        values = request.raw_values.get(_CHAP_PASSWORD)
        if not values or len(values[0]) != 17:
            return False
        chap = values[0]
        challenges = request.raw_values.get(_CHAP_CHALLENGE)
        challenge = challenges[0] if challenges else request.authenticator
        digest = hashlib.md5(chap[:1] + password.encode() + challenge).digest()  # noqa: S324 - RFC 1994
        return hmac.compare_digest(digest, chap[1:])

    @staticmethod
    def secret(request: RadiusRequest) -> bytes:
        return request.secret

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
        secret = request.secret
        for state in request.raw_values.get(_PROXY_STATE, ()):
            body += bytes((_PROXY_STATE, len(state) + 2)) + state
        if message_authenticator:
            length = 20 + 18 + len(body)
            header = struct.pack("!BBH", code, request.identifier, length)
            signed = header + request.authenticator + _EMPTY_MESSAGE_AUTHENTICATOR + body
            body = b"\x50\x12" + hmac.digest(secret, signed, "md5") + body
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


def _add(values: dict[str, list[Scalar]], info: _AttrInfo, value: bytes) -> None:
    """Decode one value as pyrad would (VALUE names for known integers, a string that is not
    UTF-8 as its hex bytes); an undecodable value is skipped, never fatal."""
    name, kind, names = info
    try:
        if kind == "string":
            # pyrad keeps a string that is not UTF-8 as its bytes rather than dropping it.
            try:
                decoded: Scalar = value.decode("utf-8")
            except UnicodeDecodeError:
                decoded = "0x" + value.hex()
        elif kind == "integer":
            if len(value) != 4:
                return
            decoded = names.get(value) or int.from_bytes(value, "big")
        elif kind == "ipaddr":
            if len(value) != 4:
                return
            decoded = socket.inet_ntoa(value)
        elif kind == "octets":
            decoded = "0x" + value.hex()
        else:
            decoded = _plain(tools.DecodeAttr(kind, value))
    except Exception:
        return
    values.setdefault(name, []).append(decoded)
