"""One client connection: frames in, handlers called in order, responses out in order.

Like Kafka's network layer, a connection processes one request at a time: a request whose
handler must wait (long-poll Fetch, a flush) holds the ones behind it, which keeps responses in
request order without reordering buffers. Handlers that answer at once are called inline from
``buffer_updated`` with no task switch, which is what keeps small-request latency low.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Awaitable, Generator
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from artesian.broker.authenticator import (
    AuthenticationFailed,
    SaslAuthenticator,
    SaslState,
    UnansweredFailure,
)
from artesian.broker.connection_quotas import Refusal
from artesian.broker.handlers._quota import charge_encoding_time, charge_request_time
from artesian.broker.response import RawResponse
from artesian.protocol import api
from artesian.protocol.codec import DecodeError
from artesian.protocol.framing import FrameDecoder, FrameTooLarge, InvalidFrameSize
from artesian.security.ssl_principal_mapper import NoMatchingRule
from artesian.storage.segment import FileSlice
from artesian.tenancy import LogicalCluster, Translation, refusal_response, refused_api

if TYPE_CHECKING:
    from artesian.broker.listeners import Listener
    from artesian.broker.purgatory import DelayedFetch
    from artesian.broker.server import Broker

log = logging.getLogger("artesian.connection")

# Stop reading from a client that pipelines more than this many requests, or bytes of
# requests, ahead of us: the rest waits in the socket, as in Kafka, which reads one request
# per connection at a time. Requests are handled one by one anyway; a few queued keep the
# pipeline busy without holding a client's whole window of 1 MiB produce batches in memory.
# The bound is checked after a read, so a connection may hold the bound plus the frames of
# that read and one partly received frame (at most socket.request.max.bytes).
_MAX_QUEUED = 64
_MAX_QUEUED_BYTES = 8 << 20
_LOGIN_APIS = (17, 36)  # SaslHandshake, SaslAuthenticate: never charged to request quotas


class RequestContext:
    __slots__ = ("broker", "client_id", "connection", "header", "logical_cluster", "quota_exempt")

    def __init__(self, broker: Broker, connection: KafkaConnection, header: api.RequestHeader):
        self.broker = broker
        self.connection = connection
        self.header = header
        self.client_id = header.client_id
        # A broker's own request (a follower's fetch, transaction markers): its handling time
        # is not held against request_percentage, as Kafka exempts them.
        self.quota_exempt = False
        # The logical cluster the principal works in: the request was translated into the
        # shared cluster's names, and handlers that list everything show only its own.
        self.logical_cluster: LogicalCluster | None = None


class LoopTimed:
    """Awaits a handler, adding up the time each of its steps holds the event loop, and not
    the time it waits in between: the request's share of the broker, for request_percentage
    (Kafka counts its request threads' time the same way)."""

    __slots__ = ("_awaitable", "seconds")

    def __init__(self, awaitable: Awaitable[Any], seconds: float) -> None:
        self._awaitable = awaitable
        self.seconds = seconds

    def __await__(self) -> Generator[Any, Any, Any]:
        steps = self._awaitable.__await__()
        clock = time.perf_counter
        value: Any = None
        error: BaseException | None = None
        while True:
            started = clock()
            try:
                yielded = steps.throw(error) if error is not None else steps.send(value)
            except StopIteration as done:
                return done.value
            finally:
                self.seconds += clock() - started
            value, error = None, None
            try:
                value = yield yielded
            except BaseException as e:  # a cancellation: the handler gets it
                error = e


class KafkaConnection(asyncio.BufferedProtocol):
    def __init__(self, broker: Broker, listener: Listener) -> None:
        self.broker = broker
        self.listener = listener
        # Kafka's principal: the SASL user, the TLS client certificate's subject, or anonymous.
        self.principal = "User:ANONYMOUS"
        # (name, version) the client gave in ApiVersions v3+ (KIP-511); client metrics match it.
        self.client_software = ("", "")
        self.authenticator: SaslAuthenticator | None = None
        max_frame = broker.config.get_int("socket.request.max.bytes")
        if listener.sasl:
            settings = broker.sasl_settings[listener.name]
            self.authenticator = SaslAuthenticator(
                settings, broker.scram_credential, broker.delegation_token_login
            )
            # Until authenticated, a frame is at most a SASL token (Kafka's limit too).
            max_frame = min(max_frame, settings.max_receive_size)
        self.decoder = FrameDecoder(max_frame)
        self._close_after_send = False
        self._closing = False  # a close is scheduled: nothing more is read or handled
        self._throttled_until = 0.0  # a client over its quota is muted until then (KIP-219)
        self._held_for_rate = False  # muted as new, over max.connection.creation.rate
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.peer_host = ""
        self._queue: collections.deque[bytes | bytearray] = collections.deque()
        self._queued_bytes = 0
        self._busy = False
        self._pending: asyncio.Future[None] | None = None
        # The fetch parked in the purgatory for this connection's request, if any: parked
        # before its coroutine runs, so a connection lost first must cancel it here.
        self.parked_fetch: DelayedFetch | None = None
        self._paused = False  # reading paused
        self._write_paused = False  # the transport's buffer is over its high-water mark
        self._closed = False
        self._counted = False  # admitted by the connection quotas
        self._counted_logical_cluster: str | None = None  # its principal's, as counted
        self._refusals_logged: set[int] = set()  # APIs refused to its logical cluster
        self._sock_fd = -1
        self.last_active = time.monotonic()

    # --- asyncio protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.peer_host = _kafka_host(str(peer[0])) if peer else ""  # what ACLs' host matches
        quotas = self.broker.connection_quotas
        refused = quotas.admit(self.peer_host, self.listener.name)
        if refused is not None:
            self._refuse(transport, refused)
            return
        self._counted = True
        # Only admitted ones count for max.connection.creation.rate, and wait their turn.
        if (hold_ms := quotas.accept_throttle_ms(self.listener.name)) > 0:
            self._hold_until_admitted(hold_ms)
        sock = transport.get_extra_info("socket")
        # Under TLS the bytes must go through the transport: no sendfile.
        self._sock_fd = sock.fileno() if sock is not None and not self.listener.tls else -1
        if self.listener.tls and self.authenticator is None:
            subject = _certificate_subject(transport.get_extra_info("peercert"))
            if subject is not None:  # a certificate, even one naming nobody (Kafka: "User:")
                mapper = self.broker.ssl_principal_mappers[self.listener.name]
                try:
                    self.principal = f"User:{mapper.name(subject)}"
                except NoMatchingRule as e:
                    log.warning(
                        "closing connection from %s on listener %s: its certificate names no "
                        "principal (%s); add a rule for it to ssl.principal.mapping.rules",
                        self.peer,
                        self.listener.name,
                        e,
                    )
                    self.broker.metrics.authentications.labels(self.listener.name, "failure").inc()
                    # Closed at once: nothing it sent behind the handshake is handled.
                    self._closed = True
                    assert self.transport is not None
                    self.transport.abort()
                    return
        if sock is not None:
            for key, opt in (
                ("socket.send.buffer.bytes", socket.SO_SNDBUF),
                ("socket.receive.buffer.bytes", socket.SO_RCVBUF),
            ):
                # Only when set: Kafka's 100 KiB default would switch off the kernel's
                # buffer autotuning, which large fetches through sendfile profit from.
                size = self.broker.config.get_int(key)
                if self.broker.config.is_set(key) and size > 0:
                    sock.setsockopt(socket.SOL_SOCKET, opt, size)
        self.broker.connections.add(self)
        self.broker.metrics.connections.set(len(self.broker.connections))
        if refused := self._count_logical_cluster():  # a TLS client's certificate names it
            self._note_refusal(refused, "closing")
            self._close_after_send = True  # as after a login: closed after the delay
            self._close_soon()

    def _hold_until_admitted(self, ms: int) -> None:
        """Mute a new connection for ``ms`` (over max.connection.creation.rate), as throttle()
        does; its pause is taken once connection_made returns (uvloop starts reading then,
        ignoring a pause before), so that a held client cannot queue without bounds."""
        self.broker.metrics.accept_throttle.labels(self.listener.name).inc(ms / 1000)
        self._held_for_rate = True
        self._mute(ms, pause_now=False)

    def _count_logical_cluster(self) -> Refusal | None:
        """Count this connection against its principal's logical cluster's limit, once its
        principal is known (a login, or a TLS client's certificate)."""
        lc = self.broker.logical_cluster_of(self.principal)
        lkc = lc.id if lc is not None else None
        if lkc == self._counted_logical_cluster:
            return None
        quotas = self.broker.connection_quotas
        if self._counted_logical_cluster is not None:
            quotas.release_logical_cluster(self._counted_logical_cluster)
            self._counted_logical_cluster = None
        if lkc is None:
            return None
        refused = quotas.admit_logical_cluster(lkc)
        if refused is None:
            self._counted_logical_cluster = lkc
        return refused

    def _note_refusal(self, refused: Refusal, what: str) -> None:
        """Count a connection over a limit, and log it (``holding``: many a second when a
        client storms, not worth a line each)."""
        self.broker.metrics.connections_refused.labels(self.listener.name, refused.kind).inc()
        level = logging.DEBUG if what == "holding" else logging.INFO
        log.log(
            level,
            "%s connection from %s on %s: %s",
            what,
            self.peer,
            self.listener.name,
            refused.reason,
        )

    def _refuse(self, transport: Any, refused: Refusal) -> None:
        """Not served: closed now, or (over the address's connection rate) after the delay
        the rate asks, so that the client does not reconnect at once (Kafka's delayed close)."""
        self._closed = True
        if refused.close_after_ms <= 0:
            self._note_refusal(refused, "closing")
            transport.abort()
            return
        self._note_refusal(refused, "holding")
        # Reading starts once this returns (uvloop ignores a pause before): pause it then.
        # Whatever comes meanwhile is dropped unread (buffer_updated), never queued.
        loop = asyncio.get_running_loop()
        loop.call_soon(transport.pause_reading)
        loop.call_later(refused.close_after_ms / 1000, transport.abort)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if not self._counted:
            return  # refused by the connection quotas: nothing else was set up
        self._counted = False
        self.broker.connection_quotas.release(self.peer_host, self.listener.name)
        if self._held_for_rate and self._throttled_until > time.monotonic():
            self.broker.connection_quotas.refund_creation(self.listener.name)
        if self._counted_logical_cluster is not None:
            self.broker.connection_quotas.release_logical_cluster(self._counted_logical_cluster)
            self._counted_logical_cluster = None
        self._clear_queue()
        if self._pending is not None and not self._pending.done():
            # A parked fetch or join of a client that is gone: nobody will read the answer.
            self._pending.cancel()
        if self.parked_fetch is not None:
            self.parked_fetch.future.cancel()
            self.parked_fetch = None
        # A share consumer gone: what it acquired goes back to its group.
        self.broker.share_partition_manager.connection_closed(self)
        self.broker.connections.discard(self)
        self.broker.metrics.connections.set(len(self.broker.connections))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.decoder.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        if self._closed:
            return  # closing, or held before a delayed close: nothing more is handled
        self.last_active = time.monotonic()
        try:
            frames = self.decoder.buffer_updated(nbytes)
        except (FrameTooLarge, InvalidFrameSize) as e:
            self._bad_frame(e)
            return
        if not frames:
            return
        self._queue.extend(frames)
        self._queued_bytes += sum(map(len, frames))
        if not self._busy:
            self._process()
        self._update_reading()

    def eof_received(self) -> bool | None:
        return None

    def pause_writing(self) -> None:
        # Like Kafka muting a channel until its response is sent: a client that does not read
        # its responses gets no more of them, and its requests wait in the socket.
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if not self._busy:
            self._process()
        self._update_reading()

    def stop_reading(self) -> None:
        """The broker is stopping: read no more requests."""
        self._update_reading()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self._closed:
            return
        stop = (
            self._write_paused
            or len(self._queue) > _MAX_QUEUED
            or self._queued_bytes > _MAX_QUEUED_BYTES
            or self.broker.stopping
            or self._closing
            or (self._throttled_until and self._throttled_until > time.monotonic())
        )
        if stop and not self._paused:
            self._paused = True
            transport.pause_reading()
        elif not stop and self._paused:
            self._paused = False
            transport.resume_reading()

    @property
    def busy(self) -> bool:
        """A request is being handled (a parked fetch, a waiting join)."""
        return self._busy

    def close(self) -> None:
        if not self._closed and self.transport is not None:
            self._closed = True
            self.transport.close()

    def _bad_frame(self, e: FrameTooLarge | InvalidFrameSize) -> None:
        auth = self.authenticator
        if auth is None or auth.complete:
            log.warning(
                "closing connection from %s: %s (raise socket.request.max.bytes if this "
                "client is legitimate)",
                self.peer,
                e,
            )
            self.close()
            return
        what = str(e)
        if isinstance(e, FrameTooLarge) and e.size > auth.settings.max_receive_size:
            what = _oversized_token(e.size, auth)
        if auth.reauthenticating:
            # As Kafka: a frame no SASL token can be fails the re-authentication.
            self.authentication_failed(UnansweredFailure(what))
            return
        log.warning(
            "closing connection from %s on listener %s: %s, before authentication; is "
            "the client configured with security.protocol=%s?",
            self.peer,
            self.listener.name,
            what,
            self.listener.security_protocol,
        )
        self.close()

    # --- request pipeline -------------------------------------------------------------------

    def _process(self) -> None:
        """Handle queued requests until one must wait, the client stops reading, the broker
        is stopping, or the queue is empty."""
        while self._queue and not self._closed and not self._closing and not self._write_paused:
            if self._throttled_until and self._throttled_until > time.monotonic():
                break  # throttle() resumes it
            if self.broker.stopping:
                self._clear_queue()  # not started: the client retries elsewhere
                break
            frame = self._queue.popleft()
            self._queued_bytes -= len(frame)
            result = self._dispatch(frame)
            if result is not None:
                self._busy = True
                self._pending = asyncio.ensure_future(self._finish(result))
                return
        self._busy = False
        self._update_reading()

    async def _finish(self, pending: Awaitable[None]) -> None:
        try:
            await pending
        except asyncio.CancelledError:
            return  # the connection is gone
        except Exception:
            log.exception("request handling failed on %s; closing the connection", self.peer)
            self.close()
        self._busy = False
        self._process()

    def _dispatch(self, frame: bytes | bytearray) -> Awaitable[None] | None:
        view = memoryview(frame)
        auth = self.authenticator
        if auth is not None and (auth.session_expiration_ns is not None or not auth.complete):
            # SASL: before login, re-authenticating, or in a session that expires (KIP-368).
            header = self._sasl_gate(auth, view)
            if header is None:
                return None
        else:
            try:
                header = api.parse_request_header(view)
            except DecodeError as e:
                self._malformed_header(e)
                return None
        broker = self.broker
        started = time.perf_counter()
        # Logging in is not charged (Kafka authenticates before its quotas), nor is any
        # request before it: they would all be ANONYMOUS's.
        metered = (
            broker.quota_manager.active("request")
            and header.api_key not in _LOGIN_APIS
            and (auth is None or auth.complete)
        )
        entry = broker.handlers.get(header.api_key)
        if entry is None:
            log.warning("closing connection from %s: unknown API key %d", self.peer, header.api_key)
            self.close()
            return None
        if not entry.min_version <= header.api_version <= entry.max_version:
            if auth is not None and not auth.complete and header.api_key != api.API_VERSIONS_KEY:
                log.warning(
                    "closing connection from %s: %s v%d during SASL authentication is not "
                    "supported",
                    self.peer,
                    api.api_name(header.api_key),
                    header.api_version,
                )
                self.close()
                return None
            self._send_unsupported(header)
            return None
        ctx = RequestContext(broker, self, header)
        try:
            request = entry.decode(header, view)
        except (DecodeError, ValueError, TypeError, OverflowError, KeyError) as e:
            broker.metrics.request_errors.labels(
                api.request_metric_name(header.api_key), "decode"
            ).inc()
            log.warning(
                "closing connection from %s (client %s): malformed %s v%d request: %s",
                self.peer,
                header.client_id,
                api.api_name(header.api_key),
                header.api_version,
                e,
            )
            self.close()
            return None
        translation = None
        lc = broker.logical_cluster_of(self.principal)
        if lc is not None and refused_api(header.api_key, header.api_version, request):
            self._refuse_for_logical_cluster(header, lc, request)
            return None
        try:
            if lc is not None:
                ctx.logical_cluster = lc
                translation = lc.translate(header.api_key, request, broker)
                request = translation.request
            result = entry.handler(ctx, request)
            if translation is not None:
                result = _translated(result, translation)
        except Exception:
            log.exception(
                "%s v%d from %s failed", api.api_name(header.api_key), header.api_version, self.peer
            )
            self._send_error(header, ErrorCode.unknown_server_error)
            return None
        if isinstance(result, Awaitable):
            if metered:
                result = LoopTimed(result, time.perf_counter() - started)
            return self._await_and_send(ctx, result, started)
        if metered:
            result = charge_request_time(ctx, result, time.perf_counter() - started)
        self._send(header, result, started, ctx if metered else None)
        return None

    def _malformed_header(self, e: DecodeError) -> None:
        log.warning("closing connection from %s: malformed request header (%s)", self.peer, e)
        self.close()

    def _sasl_gate(self, auth: SaslAuthenticator, view: memoryview) -> api.RequestHeader | None:
        """What SASL makes of a frame before it is handled as a request: its header, or None
        when it was dealt with here (a bare SASL token, or the connection is closing)."""
        if not auth.complete:
            if auth.raw_tokens:
                self._raw_sasl_token(auth, bytes(view))
                return None
            if len(view) > auth.settings.max_receive_size:
                # Only in a re-authentication (the decoder keeps socket.request.max.bytes, so
                # that a large request pipelined behind the last token is read): a frame of the
                # exchange is a SASL token, and fails it if too large, as Kafka reads it.
                self.authentication_failed(UnansweredFailure(_oversized_token(len(view), auth)))
                return None
        try:
            header = api.parse_request_header(view)
        except DecodeError as e:
            self._malformed_header(e)
            return None
        if auth.complete:
            # KIP-368, as Kafka's Processor: a SaslHandshake may begin a re-authentication,
            # even after expiry; anything else on an expired session closes the connection.
            now = time.monotonic_ns()
            if header.api_key == 17 and auth.maybe_begin_reauthentication(now):
                return header
            if auth.session_expired(now):
                self._session_expired(header, auth)
                return None
            return header
        if auth.allows(header.api_key):
            return header
        if auth.reauthenticating:
            # As Kafka: the re-authentication fails (counted, closed after the failed-login
            # delay); the request is answered ILLEGAL_SASL_STATE only once tokens are expected.
            failure = auth.unexpected_request(api.api_name(header.api_key))
            self.authentication_failed(failure)
            if not isinstance(failure, UnansweredFailure):
                self._send_error(header, ErrorCode.illegal_sasl_state)
            return None
        if auth.state is SaslState.AUTHENTICATE:
            # Kafka answers the stray request with ILLEGAL_SASL_STATE, then closes.
            self._send_error(header, ErrorCode.illegal_sasl_state)
        log.warning(
            "closing connection from %s on listener %s: %s before SASL authentication "
            "completed; the client must use security.protocol=%s with a sasl.mechanism "
            "of %s",
            self.peer,
            self.listener.name,
            api.api_name(header.api_key),
            self.listener.security_protocol,
            ", ".join(auth.settings.mechanisms),
        )
        self.close()
        return None

    def _refuse_for_logical_cluster(
        self, header: api.RequestHeader, lc: LogicalCluster, request: Any
    ) -> None:
        if header.api_key not in self._refusals_logged:  # once per API: a client may retry
            self._refusals_logged.add(header.api_key)
            log.info(
                "refused %s v%d from %s: %s works in logical cluster %s, which does not offer "
                "it; run it as a principal of the shared cluster",
                api.api_name(header.api_key),
                header.api_version,
                self.peer,
                self.principal,
                lc.id,
            )
        refusal = refusal_response(header.api_key, header.api_version, request)
        if refusal is None:
            self._send_error(header, ErrorCode.cluster_authorization_failed)
        else:
            self.write(
                api.encode_response(
                    header.api_key, header.api_version, header.correlation_id, refusal
                )
            )

    async def _await_and_send(
        self, ctx: RequestContext, result: Awaitable[Any], started: float
    ) -> None:
        header = ctx.header
        try:
            response = await result
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this request's own task: the connection is going away
            # A future the handler awaited was cancelled under it: answer, do not hang.
            log.warning(
                "%s v%d from %s was cancelled inside the broker; answering with an error",
                api.api_name(header.api_key),
                header.api_version,
                self.peer,
            )
            self._send_error(header, ErrorCode.unknown_server_error)
            return
        except Exception:
            log.exception(
                "%s v%d from %s failed", api.api_name(header.api_key), header.api_version, self.peer
            )
            self._send_error(header, ErrorCode.unknown_server_error)
            return
        if isinstance(result, LoopTimed):
            response = charge_request_time(ctx, response, result.seconds)
            self._send(header, response, started, ctx)
        else:
            self._send(header, response, started)

    def throttle(self, ms: int) -> None:
        """Over a quota: read and handle nothing more from this client for ``ms`` (the
        response already sent says so in throttle_time_ms), as Kafka mutes the channel."""
        if ms <= 0 or self._closed:
            return
        self._mute(ms, pause_now=True)

    def _mute(self, ms: int, pause_now: bool) -> None:
        """Handle nothing for ``ms``, and stop reading (``pause_now`` False: once the loop
        comes round, for a connection still in connection_made, where uvloop ignores it)."""
        self._throttled_until = max(self._throttled_until, time.monotonic() + ms / 1000)
        loop = asyncio.get_running_loop()
        if pause_now:
            self._update_reading()
        else:
            loop.call_soon(self._update_reading)
        loop.call_later(ms / 1000, self._end_throttle)

    def _end_throttle(self) -> None:
        if self._closed:
            return
        left = self._throttled_until - time.monotonic()
        if left > 0:
            # Throttled again since, or the loop woke a hair early: wait out the rest.
            asyncio.get_running_loop().call_later(left, self._end_throttle)
            return
        self._throttled_until = 0.0
        self._held_for_rate = False
        self._update_reading()
        if not self._busy:
            self._process()

    # --- authentication ---------------------------------------------------------------------

    def authenticated(self, auth: SaslAuthenticator) -> None:
        """SASL succeeded (a login or a re-authentication): requests may now be as large as
        any other client's."""
        self.principal = auth.principal
        self.decoder.max_frame_size = self.broker.config.get_int("socket.request.max.bytes")
        if refused := self._count_logical_cluster():
            self._note_refusal(refused, "closing")
            self._close_after_send = True  # the login's answer, then the close
        reauthenticated = auth.logins > 1  # not the connection's first login
        metrics = self.broker.metrics
        counter = metrics.reauthentications if reauthenticated else metrics.authentications
        counter.labels(self.listener.name, "success").inc()
        log.debug(
            "%s %s as %s on %s; session lifetime %d ms",
            self.peer,
            "re-authenticated" if reauthenticated else "authenticated",
            auth.principal,
            self.listener.name,
            auth.session_lifetime_ms,
        )

    def authentication_failed(self, failure: AuthenticationFailed) -> None:
        """A login or re-authentication failed: count and log it, and close after
        ``connection.failed.authentication.delay.ms`` (Kafka's brake on password guessing).
        The failing request's answer, sent next, closes; an UnansweredFailure closes now."""
        self._close_after_send = True
        said = str(failure)
        cause = failure.__cause__
        if isinstance(cause, AuthenticationFailed) and str(cause) != said:  # not told the client
            said = f"{failure} ({cause})"
        metrics = self.broker.metrics
        if self.authenticator is not None and self.authenticator.logins > 0:
            metrics.reauthentications.labels(self.listener.name, "failure").inc()
            # The principal is named: this is how a deleted user's connection ends.
            log.info(
                "re-authentication failed for %s (%s) on listener %s: %s",
                self.peer,
                self.principal,
                self.listener.name,
                said,
            )
        else:
            metrics.authentications.labels(self.listener.name, "failure").inc()
            log.info(
                "authentication failed for %s on listener %s: %s",
                self.peer,
                self.listener.name,
                said,
            )
        if isinstance(failure, UnansweredFailure):
            self._close_soon()

    def _session_expired(self, header: api.RequestHeader, auth: SaslAuthenticator) -> None:
        """As Kafka: the request is not answered, the connection closes at once."""
        self.broker.metrics.expired_connections_killed.labels(self.listener.name).inc()
        log.info(
            "closing connection from %s (%s) on listener %s: its SASL session expired "
            "without re-authentication (session lifetime %d ms); %s not answered",
            self.peer,
            auth.principal,
            self.listener.name,
            auth.session_lifetime_ms,
            api.api_name(header.api_key),
        )
        self._clear_queue()
        self.close()

    def _raw_sasl_token(self, auth: SaslAuthenticator, token: bytes) -> None:
        """SaslHandshake v0: tokens come and go as bare size-prefixed frames."""
        try:
            reply = auth.authenticate(token, time.monotonic_ns())
        except AuthenticationFailed as e:  # an UnansweredFailure: v0 has no way to say why
            self.authentication_failed(e)
            return
        self.write(len(reply).to_bytes(4, "big") + reply)
        if auth.complete:
            self.authenticated(auth)
            if self._close_after_send:  # over its logical cluster's connection limit
                self._close_soon()

    # --- responses --------------------------------------------------------------------------

    def _send_unsupported(self, header: api.RequestHeader) -> None:
        if header.api_key == api.API_VERSIONS_KEY:
            # The spec's fallback: an ApiVersions v0 response naming what we support.
            self.write(self.broker.api_versions_fallback(header.correlation_id))
            return
        self._send_error(header, ErrorCode.unsupported_version)

    def _send_error(self, header: api.RequestHeader, code: ErrorCode) -> None:
        response = api.error_response(header.api_key, header.api_version, code)
        if response is None:
            log.warning(
                "closing connection from %s: cannot answer %s v%d",
                self.peer,
                api.api_name(header.api_key),
                header.api_version,
            )
            self.close()
            return
        self.write(
            api.encode_response(header.api_key, header.api_version, header.correlation_id, response)
        )
        if self._close_after_send:
            self._close_soon()

    def _send(
        self,
        header: api.RequestHeader,
        response: Any,
        started: float,
        metered: RequestContext | None = None,
    ) -> None:
        """``metered``: the request's context when request_percentage counts it; encoding
        the response is then charged too (for its next request, as Kafka charges the network
        thread's time)."""
        name = api.request_metric_name(header.api_key)
        self.broker.metrics.observe_request(name, time.perf_counter() - started)
        if response is None:  # acks=0 Produce: no response at all
            return
        if isinstance(response, RawResponse):
            self.write_parts(response.frame_parts(header))
            return
        encoding = time.perf_counter() if metered is not None else 0.0  # no clock read unmetered
        self.write(
            api.encode_response(header.api_key, header.api_version, header.correlation_id, response)
        )
        if metered is not None:
            charge_encoding_time(metered, time.perf_counter() - encoding)
        if self._close_after_send:
            self._close_soon()

    def _clear_queue(self) -> None:
        self._queue.clear()
        self._queued_bytes = 0

    def _close_soon(self) -> None:
        """Read and answer nothing more; close after the failed-login delay (the transport
        sends what it holds first)."""
        self._clear_queue()
        self._closing = True
        self._update_reading()
        delay = self.broker.config.get_int("connection.failed.authentication.delay.ms")
        if self._close_after_send and delay > 0:
            asyncio.get_running_loop().call_later(delay / 1000, self.close)
        else:
            self.close()

    def write(self, data: bytes | bytearray) -> None:
        if not self._closed and self.transport is not None:
            self.transport.write(data)

    def write_parts(self, parts: list[bytes | bytearray | FileSlice]) -> None:
        transport = self.transport
        if self._closed or transport is None:
            return
        pending: list[bytes | bytearray] = []
        for part in parts:
            if not isinstance(part, FileSlice):
                pending.append(part)
                continue
            if pending:
                transport.write(b"".join(pending))
                pending = []
            self._write_file(part)
        if pending:
            transport.write(b"".join(pending) if len(pending) > 1 else pending[0])

    def _write_file(self, part: FileSlice) -> None:
        """Zero-copy: when nothing is queued ahead in the transport, the kernel copies the
        file pages straight into the socket; whatever the socket cannot take now goes through
        the transport's buffer, so order is kept."""
        assert self.transport is not None
        position, remaining = part.position, part.size
        if self._sock_fd >= 0 and self.transport.get_write_buffer_size() == 0:
            try:
                while remaining > 0:
                    sent = os.sendfile(self._sock_fd, part.fd, position, remaining)
                    if sent == 0:
                        break
                    position += sent
                    remaining -= sent
            except BlockingIOError:
                pass
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EINVAL, errno.ENOSYS):
                    log.warning("sendfile to %s failed: %s; closing", self.peer, e)
                    self.close()
                    return
        if remaining > 0:
            self.transport.write(os.pread(part.fd, remaining, position))


# RFC 4514 short names for the attributes Python's ssl reports by their long names.
_DN_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "countryName": "C",
    "domainComponent": "DC",
    "streetAddress": "STREET",
    "userId": "UID",
}


def _translated(result: Any, translation: Translation) -> Any:
    """A handler's answer in the logical cluster's names (the answers encoded by hand,
    Fetch's and the all-topics Metadata's, are written in them by their handlers)."""
    if isinstance(result, Awaitable):

        async def later() -> Any:
            return _translated(await result, translation)

        return later()
    if result is None or isinstance(result, RawResponse):
        return result
    return translation.response(result)


def _oversized_token(size: int, auth: SaslAuthenticator) -> str:
    limit = auth.settings.max_receive_size
    return f"a frame of {size} bytes, larger than sasl.server.max.receive.size={limit}"


def _certificate_subject(cert: Any) -> str | None:
    """A client certificate's subject as Kafka's SSL principal writes it: RFC 2253, the
    most specific name first (``CN=alice,O=Example,C=US``); "" for an empty subject (a
    SPIFFE certificate names its holder in a SAN), None without a certificate (ANONYMOUS,
    as Kafka's only for a peer that presented none)."""
    if not cert:
        return None
    rdns = [
        "+".join(f"{_DN_NAMES.get(name, name)}={_escape_dn_value(value)}" for name, value in rdn)
        for rdn in cert.get("subject", ())
    ]
    return ",".join(reversed(rdns))


def _kafka_host(address: str) -> str:
    """The client address as Kafka's ACLs name it (Java's getHostAddress): IPv6 written out
    in full without leading zeros, no scope; an IPv4-mapped address as IPv4."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return ":".join(f"{int(group, 16):x}" for group in ip.exploded.split(":"))
    return str(ip)


def _escape_dn_value(value: str) -> str:
    """As Java's X500Principal writes a value (RFC 2253, AVA.toRFC2253String), so that
    principals, ACLs and mapping rules written for Kafka match: ,=+<>#;"\\ escaped
    wherever they stand, NUL as \\00, every leading and trailing space (or CR) escaped. A
    value can never pass for another attribute or name part."""
    escaped = ["\\00" if c == "\0" else "\\" + c if c in _DN_SPECIALS else c for c in value]
    lead = next((i for i, c in enumerate(escaped) if c not in (" ", "\r")), len(escaped))
    trail = next((i for i in range(len(escaped) - 1, -1, -1) if escaped[i] not in (" ", "\r")), -1)
    return "".join("\\" + c if i < lead or i > trail else c for i, c in enumerate(escaped))


_DN_SPECIALS = frozenset(',=+<>#;"\\')
