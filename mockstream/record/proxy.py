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
import functools
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
from ..dialects.conversation import keeps
from ..errors import RequestError
from ..plan import Ask
from ..plan.checks import clean_surrogates
from ..plan.recording import RecordedWrite, Recording
from ..server.errors import error_response
from ..server.journal import Entry
from ..server.state import State
from .headers import forwarded_headers, kept_headers, was_reset
from .store import (
    Redaction,
    Redactor,
    digest,
    document,
    file_stem,
    match_rules,
    pinned_rules,
    write_scenario,
)

log = logging.getLogger("mockstream")

DEFAULT_TIMEOUT = 60.0  # s the upstream may stay silent (before its headers, or between two reads)
RESET_GRACE = 0.05  # s between the last bytes written to the client and its RST, so it reads them first
INLINE_WRITES = 200  # a recording of more writes is written in a thread, the loop serving the other streams
CLIENT_GONE_GRACE = 5.0  # s (at most; `timeout` if shorter) an answer is still read once its client has left



@dataclass(frozen=True)
class RecordedRequest:
    """What a recording says of its request: the match rules, the parts of its file name, the body; and what
    it asks (None: its dialect could not read it, and its recording answers no other request)."""

    match: dict[str, Any]
    model: str
    turn: int
    request: Any  # redacted
    hashed: str
    ask: Ask | None = None
    keeps: bool = False  # the API keeps the answer for a later request to continue (Responses, Anthropic threads)


class _Relay:
    """One answer being relayed: the deadline set when its client left, and `gone`, done when it passes (the
    read under way is dropped then, and nothing is recorded of an answer that did not end)."""

    def __init__(self) -> None:
        self.deadline: asyncio.TimerHandle | None = None
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def expire(self) -> None:
        if not self.gone.done():
            self.gone.set_result(None)

    async def read(self, upstream: aiohttp.ClientResponse) -> tuple[bytes, bool]:
        """The upstream's next chunk; _Expired when the deadline passes first."""
        if self.gone.done():
            raise _Expired
        if self.deadline is None:  # the client is there: read straight (a task per read costs, and reorders)
            return await upstream.content.readchunk()
        read = asyncio.ensure_future(upstream.content.readchunk())
        try:
            await asyncio.wait((read, self.gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not read.done():
                read.cancel()
        if not read.done() or read.cancelled():
            raise _Expired
        return read.result()


class _Expired(Exception):
    """The client left and the answer did not end within the deadline."""


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
        self.upstream = str(without_userinfo(URL(upstream))).rstrip("/")  # no credentials reach a file
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
            return error_response(error, dialect, self.state.settings.headers)
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
        # Once the client has left, the answer has min(timeout, CLIENT_GONE_GRACE) more to end (an endless one
        # would be read forever).
        state = _Relay()
        relay = asyncio.ensure_future(self._relay(request, upstream, asked, redaction, entry, start, state))
        self._relays.add(relay)
        relay.add_done_callback(self._relays.discard)
        try:
            return await asyncio.shield(relay)
        except asyncio.CancelledError:
            if not relay.done():
                self._client_left(state)
            raise

    def _client_left(self, state: _Relay) -> None:
        """Start the relay's deadline (once)."""
        if state.deadline is None:
            state.deadline = asyncio.get_running_loop().call_later(min(self.timeout, CLIENT_GONE_GRACE), state.expire)

    def asked(self, request: web.Request, raw: bytes | None, dialect: Dialect, redaction: Redaction) -> RecordedRequest:
        """What the request asks, seen with the conversation it continues (`previous_response_id`, a thread),
        as far as it parses: a request its dialect refuses (bad JSON, a 400 body) is still forwarded and
        recorded, pinned by its body so that it answers no other request."""
        body: Any = None
        if raw is None:
            recorded: Any = dict(request.query)
        else:
            try:
                body = clean_surrogates(json.loads(raw))
                recorded = body
            except (ValueError, RecursionError):
                recorded = raw.decode("utf-8", "replace")
        ask: Ask | None = None
        if raw is None or isinstance(body, dict):
            view = RequestView(request.method, request.path, request.query_string, request.headers, body)
            try:
                asked = dialect.parse(view)
                ask = self.state.conversations.resolve(asked.ask, dialect.name)
                body = asked.request  # the JSON request (a query string's too) that body rules see
            except Exception:  # best effort: whatever the dialect thinks of it, the upstream answers it
                ask = None
        redacted = redaction.value(recorded)
        if ask is None:
            model = body["model"] if isinstance(body, dict) and isinstance(body.get("model"), str) else ""
            rules = pinned_rules(dialect.name, body, redacted, redaction)
        else:
            model = ask.model
            rules = match_rules(dialect.name, ask, redaction, body)
        return RecordedRequest(
            rules,
            redaction.text(model) if model else "unknown",
            ask.turn if ask is not None else 0,
            redacted,
            digest(redacted),
            ask,
            ask is not None and keeps(dialect.name, body),
        )

    async def _relay(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        asked: RecordedRequest,
        redaction: Redaction,
        entry: Entry,
        start: float,
        state: _Relay,
    ) -> web.StreamResponse:
        try:
            return await self._relayed(request, upstream, asked, redaction, entry, start, state)
        except asyncio.CancelledError:  # the server is stopping
            self._close(entry, upstream.status, self._cancelled(), start)
            raise
        finally:
            if state.deadline is not None:
                state.deadline.cancel()
            upstream.close()

    async def _relayed(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        asked: RecordedRequest,
        redaction: Redaction,
        entry: Entry,
        start: float,
        state: _Relay,
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        kept = kept_headers(upstream.headers)
        # Asked for identity; an upstream that compresses all the same is passed on (the client can read it)
        # but not recorded: the redaction cannot see inside compressed bytes.
        encoding = upstream.headers.get("Content-Encoding", "identity").strip().lower() or "identity"
        headers = CIMultiDict(kept)
        headers.update(self.state.settings.headers)  # the server's own (`--header`, the worker's pid)
        if encoding != "identity":
            headers["Content-Encoding"] = upstream.headers["Content-Encoding"]
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
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
            self._client_left(state)
        writes: list[RecordedWrite] = []
        pending, pending_at = bytearray(), 0.0
        end, sent, first, last = "completed", 0, None, None
        try:
            while True:
                try:
                    data, chunk_end = await state.read(upstream)
                except _Expired:  # the client left, and the answer did not end in time: nothing recorded
                    entry.extra["client_disconnected"] = True
                    self._close(entry, upstream.status, "client_disconnected", start, sent, first, last)
                    sockets.close(transport)
                    return response
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
                    if client and (transport is None or transport.is_closing()):
                        client = False
                        self._client_left(state)
                    if client:
                        try:
                            await response.write(data)
                            sent += len(data)
                            first, last = first or now, now
                        except ConnectionError:
                            client = False
                            self._client_left(state)
                if pending and (chunk_end or not chunked):
                    writes.append(RecordedWrite(pending_at, bytes(pending)))
                    pending.clear()
            if pending:  # a chunk the upstream cut in the middle
                writes.append(RecordedWrite(pending_at, bytes(pending)))
            if state.deadline is not None:  # it ended in time: recorded
                state.deadline.cancel()
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
        if encoding != "identity":
            entry.extra["recording_error"] = (
                f"the upstream compressed its answer ({encoding}) though asked for identity: not recorded "
                "(secrets cannot be taken out of compressed bytes)"
            )
            outcome = "not_recorded"
        else:
            outcome = await self.record(request, asked, recording, entry)
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

    async def record(self, request: web.Request, asked: RecordedRequest, recording: Recording, entry: Entry) -> str:
        """Write the recording's file (a long one in a thread: the loop keeps the other streams flowing), add
        its scenario to the state; the journal outcome."""
        scenarios = self.state.scenarios
        dialect = asked.match["dialect"]
        stem = file_stem(dialect, asked.model, asked.turn, asked.hashed)
        writes = len(recording.writes)
        description = (
            f"Recorded from {self.upstream}: {request.method} {request.path} -> {recording.status}, "
            f"{writes} write{'s' if writes != 1 else ''}, {recording.end}"
        )
        if asked.ask is None:
            description += (
                ". Its dialect could not read the request, so its match pins the request's body and it answers "
                "no other; replayed, the same request still gets mockstream's own 400 first"
            )

        def build(name: str, take: int) -> dict[str, Any]:
            return document(name, description, asked.match, dataclasses.replace(recording, take=take))

        loop = asyncio.get_running_loop()
        write = functools.partial(write_scenario, self.out, stem, build, lambda name: name in scenarios)
        try:
            if len(recording.writes) <= INLINE_WRITES:  # a few ms: done before anything else runs (a test that
                path, scenario = write()  # asks right after its stream which file recorded it finds it)
            else:
                path, scenario = await loop.run_in_executor(None, write)
        except (OSError, ValueError) as exc:
            log.error("could not write the recording of %s %s to %s: %s", request.method, request.path, self.out, exc)
            self.state.errors.append(exc)
            entry.extra["recording_error"] = str(exc)
            return "not_recorded"
        if self.replays and asked.ask is not None:
            self.state.scenarios.add(scenario)
        if asked.keeps and asked.ask is not None and recording.answer_id is not None:
            self.state.conversations.remember(recording.answer_id, asked.ask)  # a later request may continue it
        entry.extra["recording"] = str(path)
        return "recorded" if recording.end == "completed" else f"recorded:{recording.end}"

    def _unreachable(self, exc: BaseException, dialect: Dialect, entry: Entry, start: float) -> web.Response:
        error = RequestError(
            502, f"mockstream could not reach the upstream {self.upstream}: {exc}", None,
            "upstream_unreachable", "server_error",
        )  # fmt: skip
        self._close(entry, 502, "upstream_unreachable", start)
        return error_response(error, dialect, self.state.settings.headers)

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


def without_userinfo(url: URL) -> URL:
    """The URL without `user:password@` (credentials go in the client's headers, never in a file)."""
    return url.with_user(None) if url.user is not None or url.password is not None else url


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
