"""MS-CHAPv2 (RFC 2759) over RADIUS (RFC 2548), server side, verified against a clear password.

The NAS relays the peer's MS-CHAP2-Response and the authenticator challenge it sent
(MS-CHAP-Challenge). The gateway recomputes the NT-Response from the subscriber's clear password
(the NT hash is MD4 of its UTF-16LE form), answers MS-CHAP2-Success with the authenticator
response and the MPPE keys (RFC 3079), each key salt-encrypted with the shared secret and the
request authenticator (RFC 2548 section 2.4.2); a failure is answered with MS-CHAP-Error.

MD4 is written out here: OpenSSL 3 only offers it through the legacy provider, which Python's
``hashlib`` does not load. DES (three single-DES blocks per response) comes from ``cryptography``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

MICROSOFT = 311
MS_CHAP_ERROR = 2
MS_MPPE_ENCRYPTION_POLICY = 7
MS_MPPE_ENCRYPTION_TYPES = 8
MS_CHAP_CHALLENGE = 11
MS_MPPE_SEND_KEY = 16
MS_MPPE_RECV_KEY = 17
MS_CHAP2_RESPONSE = 25
MS_CHAP2_SUCCESS = 26

_MAGIC1 = b"Magic server to client signing constant"
_MAGIC2 = b"Pad to make it do more than one iteration"
_KEY_MAGIC1 = b"This is the MPPE Master Key"
_KEY_MAGIC2 = (
    b"On the client side, this is the send key; on the server side, it is the receive key."
)
_KEY_MAGIC3 = (
    b"On the client side, this is the receive key; on the server side, it is the send key."
)
_SHS_PAD1 = bytes(40)
_SHS_PAD2 = b"\xf2" * 40


# ---- MD4 (RFC 1320) ------------------------------------------------------------------------


def _rotl(x: int, n: int) -> int:
    x &= 0xFFFFFFFF
    return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF


def md4(data: bytes) -> bytes:
    """RFC 1320 MD4 (only ever applied to a password's UTF-16LE bytes or a 16-byte hash)."""
    message = bytearray(data)
    bit_length = (8 * len(data)) & 0xFFFFFFFFFFFFFFFF
    message.append(0x80)
    message.extend(bytes((56 - len(message) % 64) % 64))
    message.extend(struct.pack("<Q", bit_length))
    a, b, c, d = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476
    for offset in range(0, len(message), 64):
        x = struct.unpack_from("<16I", message, offset)
        aa, bb, cc, dd = a, b, c, d

        def f(x_: int, y: int, z: int) -> int:
            return (x_ & y) | (~x_ & z)

        def g(x_: int, y: int, z: int) -> int:
            return (x_ & y) | (x_ & z) | (y & z)

        def h(x_: int, y: int, z: int) -> int:
            return x_ ^ y ^ z

        for i in (0, 4, 8, 12):
            a = _rotl(a + f(b, c, d) + x[i], 3)
            d = _rotl(d + f(a, b, c) + x[i + 1], 7)
            c = _rotl(c + f(d, a, b) + x[i + 2], 11)
            b = _rotl(b + f(c, d, a) + x[i + 3], 19)
        for i in (0, 1, 2, 3):
            a = _rotl(a + g(b, c, d) + x[i] + 0x5A827999, 3)
            d = _rotl(d + g(a, b, c) + x[i + 4] + 0x5A827999, 5)
            c = _rotl(c + g(d, a, b) + x[i + 8] + 0x5A827999, 9)
            b = _rotl(b + g(c, d, a) + x[i + 12] + 0x5A827999, 13)
        for i in (0, 2, 1, 3):
            a = _rotl(a + h(b, c, d) + x[i] + 0x6ED9EBA1, 3)
            d = _rotl(d + h(a, b, c) + x[i + 8] + 0x6ED9EBA1, 9)
            c = _rotl(c + h(d, a, b) + x[i + 4] + 0x6ED9EBA1, 11)
            b = _rotl(b + h(c, d, a) + x[i + 12] + 0x6ED9EBA1, 15)
        a, b, c, d = (
            (a + aa) & 0xFFFFFFFF,
            (b + bb) & 0xFFFFFFFF,
            (c + cc) & 0xFFFFFFFF,
            (d + dd) & 0xFFFFFFFF,
        )
    return struct.pack("<4I", a, b, c, d)


# ---- RFC 2759 --------------------------------------------------------------------------------


@lru_cache(maxsize=65_536)
def nt_password_hash(password: str) -> bytes:
    """NtPasswordHash: MD4 of the UTF-16LE password (cached: logins re-authenticate)."""
    return md4(password.encode("utf-16-le"))


def challenge_hash(peer_challenge: bytes, authenticator_challenge: bytes, username: str) -> bytes:
    digest = hashlib.sha1(peer_challenge + authenticator_challenge + username.encode()).digest()  # noqa: S324 - RFC 2759
    return digest[:8]


def _des_key(seven: bytes) -> bytes:
    """56 key bits -> 8 bytes with (ignored) parity bits, as RFC 2759's DesEncrypt expects."""
    bits = int.from_bytes(seven, "big")
    return bytes((((bits >> (49 - 7 * i)) & 0x7F) << 1) for i in range(8))


def _des(clear: bytes, seven: bytes) -> bytes:
    key = _des_key(seven)
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()  # noqa: S305 - RFC 2759 DES
    return encryptor.update(clear) + encryptor.finalize()


def challenge_response(challenge: bytes, password_hash: bytes) -> bytes:
    padded = password_hash + bytes(5)
    return b"".join(_des(challenge, padded[i : i + 7]) for i in (0, 7, 14))


def generate_nt_response(
    authenticator_challenge: bytes, peer_challenge: bytes, username: str, password: str
) -> bytes:
    challenge = challenge_hash(peer_challenge, authenticator_challenge, username)
    return challenge_response(challenge, nt_password_hash(password))


def authenticator_response(
    password: str,
    nt_response: bytes,
    peer_challenge: bytes,
    authenticator_challenge: bytes,
    username: str,
) -> str:
    """GenerateAuthenticatorResponse: 'S=' + 40 upper-case hex digits."""
    hash_hash = md4(nt_password_hash(password))
    digest = hashlib.sha1(hash_hash + nt_response + _MAGIC1).digest()  # noqa: S324 - RFC 2759
    challenge = challenge_hash(peer_challenge, authenticator_challenge, username)
    digest = hashlib.sha1(digest + challenge + _MAGIC2).digest()  # noqa: S324 - RFC 2759
    return "S=" + digest.hex().upper()


# ---- RFC 3079 MPPE keys ----------------------------------------------------------------------


def master_key(password: str, nt_response: bytes) -> bytes:
    hash_hash = md4(nt_password_hash(password))
    return hashlib.sha1(hash_hash + nt_response + _KEY_MAGIC1).digest()[:16]  # noqa: S324 - RFC 3079


def asymmetric_start_key(master: bytes, *, server_send: bool) -> bytes:
    """GetAsymmetricStartKey(MasterKey, 16, IsSend, IsServer=TRUE)."""
    magic = _KEY_MAGIC3 if server_send else _KEY_MAGIC2
    return hashlib.sha1(master + _SHS_PAD1 + magic + _SHS_PAD2).digest()[:16]  # noqa: S324 - RFC 3079


def encrypt_mppe_key(key: bytes, secret: bytes, request_authenticator: bytes, salt: bytes) -> bytes:
    """RFC 2548 2.4.2: salt + (key length, key, zero padding to 16n) XOR an MD5 keystream."""
    plain = bytes((len(key),)) + key
    plain += bytes(-len(plain) % 16)
    out = bytearray(salt)
    previous = request_authenticator + salt
    for i in range(0, len(plain), 16):
        stream = hashlib.md5(secret + previous).digest()  # noqa: S324 - RFC 2548
        block = bytes(p ^ s for p, s in zip(plain[i : i + 16], stream, strict=True))
        out += block
        previous = block
    return bytes(out)


def decrypt_mppe_key(value: bytes, secret: bytes, request_authenticator: bytes) -> bytes:
    """Inverse of ``encrypt_mppe_key`` (tests; a NAS does this)."""
    salt, cipher = value[:2], value[2:]
    plain = bytearray()
    previous = request_authenticator + salt
    for i in range(0, len(cipher), 16):
        block = cipher[i : i + 16]
        stream = hashlib.md5(secret + previous).digest()  # noqa: S324 - RFC 2548
        plain += (int.from_bytes(block) ^ int.from_bytes(stream)).to_bytes(16)
        previous = block
    return bytes(plain[1 : 1 + plain[0]])


# ---- RADIUS attributes -----------------------------------------------------------------------


def vsa(vendor_type: int, value: bytes) -> bytes:
    """One Microsoft Vendor-Specific attribute."""
    inner = bytes((vendor_type, len(value) + 2)) + value
    return bytes((26, len(inner) + 6)) + struct.pack("!I", MICROSOFT) + inner


def username_for_hash(user_name: str) -> str:
    """RFC 2759 hashes the user name without a Windows domain ('DOMAIN\\user' -> 'user')."""
    return user_name.rsplit("\\", 1)[-1]


@dataclass(frozen=True, slots=True)
class MsChapV2:
    """What the NAS relayed: the authenticator challenge and the 50-byte MS-CHAP2-Response."""

    authenticator_challenge: bytes
    ident: int
    peer_challenge: bytes
    nt_response: bytes

    @classmethod
    def parse(cls, challenge: bytes, response: bytes) -> MsChapV2 | None:
        if len(challenge) != 16 or len(response) != 50:
            return None
        return cls(challenge, response[0], response[2:18], response[26:50])

    def verify(self, user_name: str, password: str) -> bool:
        expected = generate_nt_response(
            self.authenticator_challenge,
            self.peer_challenge,
            username_for_hash(user_name),
            password,
        )
        return hmac.compare_digest(expected, self.nt_response)

    def success_attributes(
        self, user_name: str, password: str, secret: bytes, request_authenticator: bytes
    ) -> bytes:
        """MS-CHAP2-Success, MS-MPPE-Recv-Key, MS-MPPE-Send-Key, encryption policy/types, as
        FreeRADIUS's rlm_mschap sends them."""
        username = username_for_hash(user_name)
        success = authenticator_response(
            password, self.nt_response, self.peer_challenge, self.authenticator_challenge, username
        )
        master = master_key(password, self.nt_response)
        send = asymmetric_start_key(master, server_send=True)
        recv = asymmetric_start_key(master, server_send=False)
        authenticator = request_authenticator
        return b"".join(
            (
                vsa(MS_CHAP2_SUCCESS, bytes((self.ident,)) + success.encode()),
                vsa(MS_MPPE_RECV_KEY, encrypt_mppe_key(recv, secret, authenticator, _salt())),
                vsa(MS_MPPE_SEND_KEY, encrypt_mppe_key(send, secret, authenticator, _salt())),
                vsa(MS_MPPE_ENCRYPTION_POLICY, struct.pack("!I", 1)),  # encryption allowed
                vsa(MS_MPPE_ENCRYPTION_TYPES, struct.pack("!I", 6)),  # RC4 40 or 128 bit
            )
        )

    def error_attribute(self, error: int, message: str) -> bytes:
        """MS-CHAP-Error: ident + 'E=691 R=0 C=<challenge> V=3 M=...' (RFC 2759 section 6)."""
        text = f"E={error} R=0 C={self.authenticator_challenge.hex().upper()} V=3 M={message}"
        return vsa(MS_CHAP_ERROR, bytes((self.ident,)) + text.encode())


_salt_counter = int.from_bytes(os.urandom(2), "big")


def _salt() -> bytes:
    """RFC 2548: the salt's high bit is set and each salt in a packet is unique."""
    global _salt_counter
    _salt_counter = (_salt_counter + 1) & 0x7FFF
    return struct.pack("!H", 0x8000 | _salt_counter)


# RFC 2759 section 6 failure codes, by policy reason.
ERROR_CODES = {
    "wrong_password": 691,
    "unknown_login": 691,
    "disabled": 647,
    "contract_inactive": 647,
    "blocked_non_payment": 647,
    "mac_mismatch": 649,
    "simultaneous_use": 649,
}
