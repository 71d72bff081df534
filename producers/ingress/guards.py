"""Who may submit, and how often: API tokens, signed webhooks with a replay window, and
per-client token buckets. Pure (a clock is injected); the app turns refusals into 401/429."""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import SecretStr

Clock = Callable[[], float]

SIGNATURE_PREFIX = "v1="


class AuthFailure(Exception):
    """401: ``code`` says which check failed (never which token or secret was expected)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenAuth:
    """Bearer tokens: client id -> token. Looked up by SHA-256 digest, so no token is compared
    character by character and none is kept in clear outside the settings' SecretStr."""

    # Authorization headers already accepted -> client: a dict lookup instead of a SHA-256 per
    # request. Only valid headers are kept (at most this many), so an attacker cannot grow it;
    # a lookup compares strings only on a hash match (randomised hashing), never a token prefix.
    KNOWN_HEADERS = 1024

    def __init__(self, tokens: Mapping[str, SecretStr]) -> None:
        self._by_digest = {_digest(t.get_secret_value()): c for c, t in tokens.items()}
        self._known: dict[str, str] = {}

    def client(self, authorization: str | None) -> str:
        if authorization is not None:
            known = self._known.get(authorization)
            if known is not None:
                return known
        if not authorization:
            raise AuthFailure("missing_token", "Authorization: Bearer <token> is required")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthFailure("missing_token", "Authorization must be 'Bearer <token>'")
        client = self._by_digest.get(_digest(token.strip()))
        if client is None:
            raise AuthFailure("invalid_token", "unknown API token")
        if len(self._known) < self.KNOWN_HEADERS:
            self._known[authorization] = client
        return client


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The webhook signature header value: ``v1=`` + hex HMAC-SHA256 of ``<timestamp>.<body>``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


class WebhookVerifier:
    """HMAC-signed webhooks: gateway id, Unix timestamp and signature headers. A timestamp
    outside ``window_s`` of now is stale; a signature already accepted within the window is a
    replay (kept per ingress instance; the payment id's idempotency covers the rest)."""

    def __init__(
        self, secrets: Mapping[str, SecretStr], window_s: float, clock: Clock = time.time
    ) -> None:
        self._secrets = dict(secrets)
        self._window_s = window_s
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def verify(
        self, gateway: str | None, timestamp: str | None, signature: str | None, body: bytes
    ) -> str:
        if not gateway or not timestamp or not signature:
            raise AuthFailure(
                "missing_signature",
                "X-Filas-Gateway, X-Filas-Timestamp and X-Filas-Signature are required",
            )
        secret = self._secrets.get(gateway)
        if secret is None:
            raise AuthFailure("unknown_gateway", "unknown payment gateway")
        if not timestamp.isdigit() or len(timestamp) > 12:
            raise AuthFailure("bad_timestamp", "X-Filas-Timestamp must be Unix seconds")
        expected = sign(secret.get_secret_value(), timestamp, body)
        if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
            raise AuthFailure("bad_signature", "signature does not match the body")
        now = self._clock()
        self._forget(now)
        if abs(now - int(timestamp)) > self._window_s:
            raise AuthFailure(
                "stale_timestamp", f"timestamp is more than {self._window_s:.0f}s from now"
            )
        if expected in self._seen:
            raise AuthFailure("replayed_signature", "this signature was already used")
        self._seen[expected] = now + self._window_s
        return gateway

    def _forget(self, now: float) -> None:
        while self._seen:
            signature, expires = next(iter(self._seen.items()))
            if expires > now:
                return
            del self._seen[signature]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """One token bucket per client (``rate`` per second, ``burst`` deep but never more than
    one second of ``rate``)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        per_client: Mapping[str, float] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._per_client = dict(per_client or {})
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def rate_of(self, client: str) -> float:
        return self._per_client.get(client, self._rate)

    def take(self, client: str) -> float:
        """0 when allowed; otherwise the seconds until a token is available (Retry-After)."""
        rate = self.rate_of(client)
        # The bucket never holds more than one second of the client's rate.
        burst = max(1, min(self._burst, math.ceil(rate)))
        now = self._clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = _Bucket(float(burst), now)
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate

    def tokens(self, client: str) -> float:
        bucket = self._buckets.get(client)
        return (
            float(min(self._burst, math.ceil(self.rate_of(client))))
            if bucket is None
            else (bucket.tokens)
        )


def retry_after_header(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))
