"""What passes between the client and the upstream: the request's headers as forwarded, the answer's headers
that matter (passed back and recorded), and how a cut body tells a reset from a close."""

from __future__ import annotations

import errno
from collections.abc import Mapping

from multidict import CIMultiDict

from .store import SECRET_HEADERS

# Not forwarded: the connection's own headers, and the body's encoding (the server has undone it).
HOP_BY_HOP = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "accept-encoding",
        "content-encoding",
    }
)
# The answer's headers that matter: passed to the client and recorded. Not content-encoding: the request asks
# for identity, and an answer compressed all the same is not recorded (see proxy.py).
KEPT_NAMES = frozenset({"content-type", "x-request-id", "request-id"})
KEPT_PREFIXES = ("retry-after", "x-ratelimit-", "anthropic-ratelimit-", "openai-", "anthropic-")


def kept_headers(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """The headers of an answer that matter (lower-case names, in the order received; no secret)."""
    kept = []
    for name, value in headers.items():
        lower = name.lower()
        if lower not in SECRET_HEADERS and (lower in KEPT_NAMES or lower.startswith(KEPT_PREFIXES)):
            kept.append((lower, value))
    return kept


def forwarded_headers(headers: Mapping[str, str]) -> CIMultiDict[str]:
    """The client's headers as the upstream gets them (auth included), asking for the bytes uncompressed."""
    out: CIMultiDict[str] = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP)
    out["Accept-Encoding"] = "identity"
    return out


def was_reset(exc: BaseException) -> bool:
    """Did the upstream reset the connection (ECONNRESET), rather than close it?"""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, ConnectionResetError) or (isinstance(seen, OSError) and seen.errno == errno.ECONNRESET):
            return True
        seen = seen.__cause__ or seen.__context__
    # aiohttp (3.9-3.14) keeps the reset under a cut body only in its ClientPayloadError's message
    return "ConnectionResetError" in str(exc) or "Connection reset by peer" in str(exc)
