"""The recorder's proxy: forward a request to the upstream, stream its answer back write by write as it
arrives, and keep the exchange as a scenario file that replays it.

Nothing is buffered: each piece the upstream sends is written to the client as soon as it is read. Each
upstream HTTP chunk is one recorded write (for a body that is not chunked, each read is one), timed from the
request's arrival. The client sees the upstream's ending too: a cut is a cut (no terminating chunk), a reset
an RST.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from ..deliver import sockets
from ..dialects import Dialect, RequestView
from ..errors import RequestError
from ..plan import Ask
from ..plan.recording import RecordedWrite, Recording
from ..server.errors import error_response
from ..server.journal import Entry
from ..server.state import State
from .headers import forwarded_headers, kept_headers, was_reset
from .store import Redaction, Redactor, clean, digest, document, file_stem, match_rules, write_scenario

log = logging.getLogger("mockstream")

DEFAULT_TIMEOUT = 60.0  # s the upstream may stay silent (before its headers, or between two reads)
RESET_GRACE = 0.05  # s between the last bytes written to the client and its RST, so it reads them first


@dataclass(frozen=True)
class Asked:
    """What a recording says of its request: the match rules, the parts of its file name, the body."""

    match: dict[str, Any]
    model: str
    turn: int
    request: Any  # redacted
    hashed: str


class Proxy:
    """Forwards API requests to `upstream` (a base URL; its path, if any, prefixes the request's), streams
    the answers back and writes each exchange to `out` as a scenario file, then (with `replays`) adds it to
    the state's scenarios so the same request replays next time; without, every request goes upstream and a
    repeat is recorded as the next take (the pytest record modes). `out`, `timeout` and `replays` may change
    at any time."""

    def __init__(
        self,
        state: State,
        upstream: str,
        out: str | Path = "recordings",
        *,
        redact: Iterable[str] = (),
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.state = state
        self.upstream = upstream.rstrip("/")
        self.out = Path(out)
        self.redactor = Redactor(redact)
        self.timeout = timeout
        self.replays = True
        self._session: aiohttp.ClientSession | None = None
        self._relays: set[asyncio.Task] = set()  # answers being relayed (they outlive a client that leaves)

    def session(self) -> aiohttp.ClientSession:
        """One client session for the proxy's life, made on first use (in the server's loop)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),  # as many upstream streams as clients open
                cookie_jar=aiohttp.DummyCookieJar(),  # a cookie one client got never goes with another's request
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept"),  # the client's own, or none
            )
        return self._session

    async def close(self) -> None:
        """Stop the relays still running (nothing is recorded of them) and close the client session."""
        relays = list(self._relays)
        for relay in relays:
            relay.cancel()
        await asyncio.gather(*relays, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _cleanup(self, app: web.Application) -> None:
        await self.close()

    def url(self, request: web.Request) -> URL:
        return URL(self.upstream + request.raw_path, encoded=True)

    async def forward(
        self, request: web.Request, raw: bytes | None, dialect: Dialect, entry: Entry
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        start = loop.time() - max(0.0, time.time() - entry.time)  # the request's arrival, on the loop's clock
        redaction = self.redactor.for_request(request.headers)
        asked = self.asked(request, raw, dialect, redaction)
        entry.extra["upstream"] = self.upstream
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=self.timeout)
        try:
            upstream = await self.session().request(
                request.method,
                self.url(request),
                headers=forwarded_headers(request.headers),
                data=raw,
                timeout=timeout,
                allow_redirects=False,
            )
        except asyncio.CancelledError:
            self._close(entry, None, self._cancelled(), start)
            raise
        except asyncio.TimeoutError:
            error = RequestError(
                504, f"The upstream {self.upstream} did not answer within {self.timeout:g} s.", None,
                "upstream_timeout", "server_error",
            )  # fmt: skip
            self._close(entry, 504, "upstream_timeout", start)
            return error_response(error, dialect)
        except aiohttp.ServerDisconnectedError:  # it closed the connection before its headers: so do we
            self._close(entry, None, "upstream_closed", start)
            sockets.close(request.transport)
            return web.Response(status=204)  # never reaches the client: the connection is gone
        except aiohttp.ClientOSError as exc:
            if not isinstance(exc, aiohttp.ClientConnectorError) and was_reset(exc):
                self._close(entry, None, "upstream_reset", start)
                sockets.close(request.transport, reset=True)
                return web.Response(status=204)
            return self._unreachable(exc, dialect, entry, start)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return self._unreachable(exc, dialect, entry, start)
        # The relay is a task of its own, shielded: a client that leaves (its handler is cancelled) stops
        # getting bytes, but the upstream's answer is read to its end and recorded all the same (an SDK
        # closes its connection at `data: [DONE]`, before the body's last chunk).
        relay = asyncio.ensure_future(self._relay(request, upstream, asked, redaction, entry, start))
        self._relays.add(relay)
        relay.add_done_callback(self._relays.discard)
        return await asyncio.shield(relay)

    def asked(self, request: web.Request, raw: bytes | None, dialect: Dialect, redaction: Redaction) -> Asked:
        """What the request asks, as far as it parses: a request its dialect refuses (bad JSON, a 400 body) is
        still forwarded and recorded, matched by its dialect alone."""
        body: Any = None
        if raw is None:
            recorded: Any = dict(request.query)
        else:
            try:
                body = clean(json.loads(raw))
                recorded = body
            except (ValueError, RecursionError):
                recorded = raw.decode("utf-8", "replace")
        ask: Ask | None = None
        if raw is None or isinstance(body, dict):
            view = RequestView(request.method, request.path, request.query_string, request.headers, body)
            try:
                ask = dialect.parse(view).ask
            except Exception:  # best effort: whatever the dialect thinks of it, the upstream answers it
                ask = None
        recorded = redaction.value(recorded)
        model = ask.model if ask is not None else ""
        if ask is None and isinstance(body, dict) and isinstance(body.get("model"), str):
            model = body["model"]
        return Asked(
            match_rules(dialect.name, ask, redaction),
            redaction.text(model) if model else "unknown",
            ask.turn if ask is not None else 0,
            recorded,
            digest(recorded),
        )

    async def _relay(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        asked: Asked,
        redaction: Redaction,
        entry: Entry,
        start: float,
    ) -> web.StreamResponse:
        try:
            return await self._relayed(request, upstream, asked, redaction, entry, start)
        except asyncio.CancelledError:  # the server is stopping
            self._close(entry, upstream.status, self._cancelled(), start)
            raise
        finally:
            upstream.close()

    async def _relayed(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        asked: Asked,
        redaction: Redaction,
        entry: Entry,
        start: float,
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        kept = kept_headers(upstream.headers)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=CIMultiDict(kept))
        chunked = "chunked" in upstream.headers.get("Transfer-Encoding", "").lower()
        if upstream.status >= 200 and upstream.status not in (204, 304) and request.method != "HEAD":
            # Chunked to the client whatever the upstream used: each piece leaves as it comes, and the end
            # (after the recording is written) is the terminating chunk, not the last byte of a length.
            response.enable_chunked_encoding()
        transport = request.transport
        if transport is not None:
            sockets.no_delay(transport)
        client = True  # still there to write to
        try:
            await response.prepare(request)
        except ConnectionError:
            client = False
        writes: list[RecordedWrite] = []
        pending, pending_at = bytearray(), 0.0
        end, sent, first, last = "completed", 0, None, None
        try:
            while True:
                try:
                    data, chunk_end = await upstream.content.readchunk()
                except asyncio.TimeoutError:
                    end = "timeout"
                    break
                except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError) as exc:
                    end = "reset" if was_reset(exc) else "upstream_closed"
                    break
                if not data and not chunk_end:
                    break  # the end of the body
                if data:
                    now = loop.time()
                    if not pending:
                        pending_at = now - start
                    pending += data
                    if client:
                        try:
                            await response.write(data)
                            sent += len(data)
                            first, last = first or now, now
                        except ConnectionError:
                            client = False
                if pending and (chunk_end or not chunked):
                    writes.append(RecordedWrite(pending_at, bytes(pending)))
                    pending.clear()
            if pending:  # a chunk the upstream cut in the middle
                writes.append(RecordedWrite(pending_at, bytes(pending)))
        except Exception as exc:  # a bug of ours after the answer began: cut it, keep the error for tests
            log.exception("internal error while proxying %s", request.path)
            self.state.errors.append(exc)
            self._close(entry, upstream.status, "internal_error", start, sent, first, last)
            sockets.close(transport)
            return response
        recording = Recording(
            upstream.status,
            tuple((name, redaction.text(value)) for name, value in kept),
            redaction.writes(writes),
            end,
            request=asked.request,
            upstream=self.upstream,
        )
        # The file is there before the client sees the end: a test that reads it after its request finds it.
        outcome = self.record(request, asked, recording, entry)
        if not client or request.transport is None or request.transport.is_closing():
            entry.extra["client_disconnected"] = True  # before the end: it got what came until it left
        elif end == "completed":
            with contextlib.suppress(ConnectionError):
                await response.write_eof()
        self._close(entry, upstream.status, outcome, start, sent, first, last)
        if end == "reset":
            await _reset_when_sent(transport, last)
        elif end != "completed":
            sockets.close(transport)
        return response

    def record(self, request: web.Request, asked: Asked, recording: Recording, entry: Entry) -> str:
        """Write the recording's file, add its scenario to the state; the journal outcome."""
        scenarios = self.state.scenarios
        dialect = asked.match["dialect"]
        stem = file_stem(dialect, asked.model, asked.turn, asked.hashed)
        writes = len(recording.writes)
        description = (
            f"Recorded from {self.upstream}: {request.method} {request.path} -> {recording.status}, "
            f"{writes} write{'s' if writes != 1 else ''}, {recording.end}"
        )

        def build(name: str, take: int) -> dict[str, Any]:
            return document(name, description, asked.match, dataclasses.replace(recording, take=take))

        try:
            path, scenario = write_scenario(self.out, stem, build, lambda name: name in scenarios.names())
        except (OSError, ValueError) as exc:
            log.error("could not write the recording of %s %s to %s: %s", request.method, request.path, self.out, exc)
            self.state.errors.append(exc)
            entry.extra["recording_error"] = str(exc)
            return "not_recorded"
        if self.replays:
            scenarios.add(scenario)
        entry.extra["recording"] = str(path)
        return "recorded" if recording.end == "completed" else f"recorded:{recording.end}"

    def _unreachable(self, exc: BaseException, dialect: Dialect, entry: Entry, start: float) -> web.Response:
        error = RequestError(
            502, f"mockstream could not reach the upstream {self.upstream}: {exc}", None,
            "upstream_unreachable", "server_error",
        )  # fmt: skip
        self._close(entry, 502, "upstream_unreachable", start)
        return error_response(error, dialect)

    def _cancelled(self) -> str:
        return "shutdown" if self.state.in_flight.cut else "client_disconnected"

    def _close(
        self,
        entry: Entry,
        status: int | None,
        outcome: str,
        start: float,
        sent: int = 0,
        first: float | None = None,
        last: float | None = None,
    ) -> None:
        """Journal how the exchange ended (once)."""
        if entry.outcome != "in_progress":
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        entry.bytes_sent = sent
        entry.first_byte_at = None if first is None else time.time() - (now - first)
        entry.last_byte_at = None if last is None else time.time() - (now - last)
        self.state.journal.close(entry, status, outcome, round((now - start) * 1000, 3))


async def _reset_when_sent(transport: asyncio.BaseTransport | None, last: float | None) -> None:
    """An RST discards what the client has not read yet: wait until the bytes have left, and a little."""
    if transport is None:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.0
    while getattr(transport, "get_write_buffer_size", lambda: 0)() and loop.time() < deadline:
        await asyncio.sleep(0.005)
    wait = (last or 0.0) + RESET_GRACE - loop.time()
    if wait > 0:
        await asyncio.sleep(wait)
    sockets.close(transport, reset=True)


def attach(
    app: web.Application,
    upstream: str,
    out: str | Path = "recordings",
    *,
    redact: Iterable[str] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> Proxy:
    """A Proxy for the app made by `create_app`, set as its `State.proxy`; its client session closes with the
    app (an app already running: call `await proxy.close()` yourself)."""
    state = State.of(app)
    proxy = Proxy(state, upstream, out, redact=redact, timeout=timeout)
    state.proxy = proxy
    if not app.frozen:
        app.on_cleanup.append(proxy._cleanup)
    return proxy
