"""Who is calling: API keys from the request headers, checked before any body is read, with failure limits.

Failed attempts are limited per credential, not per address: a wrong secret for a known key id spends a token of
that key id's failure bucket, an unknown or malformed key one of the client address's. A valid key is never refused
because of someone else's failures (it is checked first, and only failures consult the failure buckets). Once a
credential's failure bucket is empty its 429 comes after a short delay, so a guessing loop costs the server little.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool

from .errors import ApiError
from .keys import SCOPES, KeyRecord, KeyStore
from .ratelimit import RateLimiter

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="faceatlas"'}
#: Paths that answer without a key (everything else under /v1/ needs one).
PUBLIC_API_PATHS = frozenset({"/v1/health"})
#: How long a locked-out credential waits for its 429: a back-to-back guessing loop slows to a trickle.
LOCKOUT_DELAY_SECONDS = 0.5


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id and what it may do (``anonymous`` with ``--no-auth``)."""

    key_id: str
    scopes: frozenset[str]
    collections: frozenset[str] | None  # None: every collection

    @classmethod
    def from_key(cls, key: KeyRecord) -> Principal:
        """The principal of an authenticated key (admin implies read, enrol and delete)."""
        scopes = set(key.scopes)
        if "admin" in scopes:
            scopes |= {"read", "enrol", "delete"}
        colls = None if "*" in key.collections else frozenset(key.collections)
        return cls(key.id, frozenset(scopes), colls)

    def allows(self, scope: str, collection: str | None = None) -> bool:
        """Whether the principal may do ``scope`` (on ``collection``)."""
        if scope not in self.scopes:
            return False
        return collection is None or self.collections is None or collection in self.collections

    @property
    def actor(self) -> str:
        """The audit-trail actor for gallery writes."""
        return f"api-key:{self.key_id}"


ANONYMOUS = Principal("anonymous", frozenset(s for s in SCOPES if s != "templates"), None)


def token_from_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key text of ``Authorization: Bearer …`` (preferred) or ``X-API-Key``, or None."""
    bearer: str | None = None
    api_key: str | None = None
    for name, value in headers:
        low = name.lower()
        if low == b"authorization" and bearer is None:
            scheme, _, cred = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and cred.strip():
                bearer = cred.strip()
        elif low == b"x-api-key" and api_key is None:
            api_key = value.decode("latin-1").strip() or None
    return bearer or api_key


def peer(scope: MutableMapping[str, Any]) -> str:
    """The client's address as the server sees it (a proxy's forwarded address only when proxies are trusted)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _limited(wait: float) -> ApiError:
    """The 429 for a bucket that is empty for ``wait`` more seconds."""
    return ApiError("rate_limited", "too many requests; slow down",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))})


class Authenticator:
    """Checks a request's key against the key store and applies the per-key and failure rate limits."""

    def __init__(self, keys: KeyStore, limiter: RateLimiter) -> None:
        self.keys = keys
        self.limiter = limiter

    def check(self, token: str | None, client: str) -> KeyRecord:
        """The active key of ``token``; 401 (or 429 once its failure bucket is empty) otherwise."""
        if not token:
            raise ApiError("unauthorized", "an API key is required (Authorization: Bearer <key> or X-API-Key)",
                           headers=_CHALLENGE)
        key, known_id = self.keys.verify(token, slow_ok=lambda key_id: self.limiter.peek(f"fail-key:{key_id}") <= 0)
        return self._decide(key, known_id, client)

    def _decide(self, key: KeyRecord | None, known_id: str | None, client: str) -> KeyRecord:
        """Apply the failure bucket (per key id, or per address for unknown ids) or the key's own rate limit."""
        if key is None:
            wait = self.limiter.take(f"fail-key:{known_id}" if known_id else f"fail-ip:{client}")
            if wait > 0:
                raise _limited(wait)
            raise ApiError("unauthorized", "the API key is unknown, malformed or revoked", headers=_CHALLENGE)
        wait = self.limiter.take(f"key:{key.id}")
        if wait > 0:
            raise _limited(wait)
        return key

    async def pre_auth(self, scope: MutableMapping[str, Any]) -> None:
        """Authenticate an API request from its headers alone (before its body is read); raises ApiError.

        A peppered-HMAC key is checked right here (one indexed read on a kept-open connection, one HMAC); only a
        legacy scrypt record, slow by design, is checked on a worker thread.
        """
        path = str(scope.get("path", ""))
        if not path.startswith(("/v1/", "/api/v1/")) or path in PUBLIC_API_PATHS:
            return
        token = token_from_headers(list(scope.get("headers", [])))
        client = peer(scope)
        if not token:
            self.check(None, client)
        assert token is not None
        legacy: list[str] = []

        def defer(key_id: str) -> bool:
            legacy.append(key_id)
            return False

        key, known_id = self.keys.verify(token, slow_ok=defer)
        try:
            if legacy:
                key = await run_in_threadpool(self.check, token, client)
            else:
                key = self._decide(key, known_id, client)
        except ApiError as err:
            if err.code == "rate_limited" and key is None:  # a locked-out credential: answer slowly (costs no CPU)
                await anyio.sleep(LOCKOUT_DELAY_SECONDS)
            raise
        state = scope.setdefault("state", {})
        state["key"] = key
        state["key_id"] = key.id


def limit_anonymous(limiter: RateLimiter, client: str) -> None:
    """Spend one token of an unauthenticated (``--no-auth``) client's bucket; 429 when it is empty."""
    wait = limiter.take(f"ip:{client}")
    if wait > 0:
        raise _limited(wait)
