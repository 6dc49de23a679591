"""Raw Kafka frames over a plain socket, for tests that must send what no client would.

Requests are built from kio's schema classes and encoded with ``artesian.protocol.codec``'s
writers (so any version the broker knows can be produced), then cut, flipped or spliced by
the tests. Responses are decoded with the same codec's readers.
"""

from __future__ import annotations

import datetime
import importlib
import socket
import struct
import time
import uuid
from dataclasses import MISSING, fields
from typing import Any

from kio.schema.metadata.v12.request import MetadataRequest
from kio.schema.sasl_authenticate.v2.request import SaslAuthenticateRequest
from kio.schema.sasl_handshake.v1.request import SaslHandshakeRequest
from kio.serial._introspect import (
    EntityField,
    EntityTupleField,
    PrimitiveTupleField,
    classify_field,
    get_field_tag,
    get_schema_field_type,
)

from artesian.protocol import api
from artesian.protocol.codec import reader_for, write_uvarint, writer_for
from tests.storage.batches import make_batch

__all__ = [
    "Closed",
    "WireConn",
    "encode_body",
    "parse_response",
    "request_frame",
    "sample_request",
    "tagged_fields",
]

_I32 = struct.Struct(">i")
CLIENT_ID = "kafka-wire"


class Closed(Exception):
    """The broker closed the connection."""


# --- encoding -----------------------------------------------------------------------------


def request_flexible(api_key: int, version: int) -> bool:
    """Whether the request uses header v2 (ApiVersions v3+ included)."""
    return api.is_flexible(api_key, version) or (api_key == api.API_VERSIONS_KEY and version >= 3)


def tagged_fields(tags: list[tuple[int, bytes]]) -> bytes:
    """A tagged-field section: count, then (tag, size, data) each."""
    out = bytearray()
    write_uvarint(out, len(tags))
    for tag, data in tags:
        write_uvarint(out, tag)
        write_uvarint(out, len(data))
        out += data
    return bytes(out)


def request_header(
    api_key: int,
    version: int,
    correlation_id: int,
    client_id: str | None = CLIENT_ID,
    header_tags: bytes | None = None,
) -> bytes:
    out = bytearray(struct.pack(">hhi", api_key, version, correlation_id))
    if client_id is None:
        out += struct.pack(">h", -1)
    else:
        raw = client_id.encode()
        out += struct.pack(">h", len(raw)) + raw
    if request_flexible(api_key, version):
        out += header_tags if header_tags is not None else b"\x00"
    return bytes(out)


def encode_body(entity: Any) -> bytes:
    out = bytearray()
    writer_for(type(entity))(out, entity)
    return bytes(out)


def request_frame(
    api_key: int,
    version: int,
    correlation_id: int,
    body: Any,
    client_id: str | None = CLIENT_ID,
    header_tags: bytes | None = None,
) -> bytes:
    """Size-prefixed request; ``body`` is raw bytes or a kio request entity."""
    raw = body if isinstance(body, bytes | bytearray) else encode_body(body)
    payload = request_header(api_key, version, correlation_id, client_id, header_tags) + raw
    return _I32.pack(len(payload)) + payload


def parse_response(api_key: int, version: int, frame: bytes) -> tuple[int, Any]:
    """(correlation id, decoded response) of a response frame without its size prefix."""
    corr = _I32.unpack_from(frame, 0)[0]
    pos = 4
    if api_key != api.API_VERSIONS_KEY and api.is_flexible(api_key, version):
        if frame[pos] != 0:
            raise AssertionError(f"unexpected response header tags {frame[pos]}")
        pos += 1
    cls = api.response_class(api_key, version)
    assert cls is not None, (api_key, version)
    view = memoryview(frame)
    entity, end = reader_for(cls)(view, pos)
    assert end == len(frame), f"{end} != {len(frame)}: trailing bytes in the response"
    return corr, entity


# --- sample requests ----------------------------------------------------------------------

_INT_DEFAULTS = {
    "acks": -1,
    "timestamp": -1,
    "replica_id": -1,
    "current_leader_epoch": -1,
    "leader_epoch": 0,
    "max_bytes": 1 << 20,
    "partition_max_bytes": 1 << 20,
    "min_bytes": 0,
    "num_partitions": 1,
    "replication_factor": 1,
    "resource_type": 2,
    "log_start_offset": -1,
    "session_epoch": -1,
    "count": 1,
    "broker_id": 1,
    "last_fetched_epoch": -1,
    "offset": 0,
}


def _sample_primitive(kafka_type: str, name: str, owner: str, ctx: dict[str, Any]) -> Any:
    match kafka_type:
        case "string":
            if name in ("resource_name", "topic", "topic_name", "topic_names", "topics"):
                return ctx["topic"]
            if "Config" in owner or name == "configuration_keys":
                if name in ("name", "configuration_keys"):
                    return "retention.ms"
                return "86400000" if name == "value" else ""
            if name == "client_software_name":
                return CLIENT_ID
            if name == "client_software_version":
                return "1.0"
            if name == "name":
                return ctx["topic"]
            return ""
        case "bytes":
            return b""
        case "records":
            return ctx["records"]
        case "uuid":
            return ctx["topic_id"]
        case "bool":
            return name == "validate_only"
        case "timedelta_i32" | "timedelta_i64":
            return datetime.timedelta(milliseconds=1000 if name == "timeout" else 0)
        case "datetime_i64":
            return datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
        case "float64":
            return 0.0
        case "error_code":
            return 0
    return _INT_DEFAULTS.get(name, 0)


def _sample_entity(cls: type, ctx: dict[str, Any]) -> Any:
    values: dict[str, Any] = {}
    overrides: dict[str, Any] = ctx["overrides"]
    for f in fields(cls):
        if f.name in overrides:
            values[f.name] = overrides[f.name]
            continue
        has_default = f.default is not MISSING or f.default_factory is not MISSING
        if get_field_tag(f) is not None and has_default:
            continue  # tagged fields keep their defaults (not written)
        fc = classify_field(f)
        if isinstance(fc, EntityTupleField):
            values[f.name] = (_sample_entity(fc.type_, ctx),)
        elif isinstance(fc, EntityField):
            if has_default:
                continue
            values[f.name] = _sample_entity(fc.type_, ctx)
        elif isinstance(fc, PrimitiveTupleField):
            kt = get_schema_field_type(f)
            item = _sample_primitive(kt, f.name, cls.__name__, ctx)
            if f.name in ("partitions", "partition_indexes", "partition_index"):
                item = 0
            values[f.name] = (item,)
        else:
            if has_default and f.name not in _INT_DEFAULTS and f.name != "timeout":
                continue
            values[f.name] = _sample_primitive(get_schema_field_type(f), f.name, cls.__name__, ctx)
    return cls(**values)


def sample_request(
    api_key: int,
    version: int,
    topic: str,
    topic_id: uuid.UUID | None = None,
    batch: bytes | None = None,
    **overrides: Any,
) -> Any:
    """A valid request entity naming ``topic`` (partition 0) with plausible values;
    ``overrides`` replace fields of that name at any depth."""
    cls = api.request_class(api_key, version)
    assert cls is not None, (api_key, version)
    ctx = {
        "topic": topic,
        "topic_id": topic_id,
        "records": bytes(batch if batch is not None else make_batch(n=1)),
        "overrides": overrides,
    }
    return _sample_entity(cls, ctx)


# --- a connection -------------------------------------------------------------------------


class WireConn:
    """One TCP connection speaking raw frames; responses are read in order."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self._buf = bytearray()
        self._corr = 0

    def __enter__(self) -> WireConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def next_corr(self) -> int:
        self._corr += 1
        return self._corr

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except ConnectionError as e:
            raise Closed(str(e)) from e

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no response")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 16)
        except ConnectionError as e:
            raise Closed(str(e)) from e
        except TimeoutError:
            raise TimeoutError("no response") from None
        if not chunk:
            raise Closed("EOF")
        self._buf += chunk

    def recv_frame(self, timeout: float | None = None) -> bytes:
        """The next response frame, without its size prefix."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self._buf) < 4:
            self._fill(deadline)
        size = _I32.unpack_from(self._buf, 0)[0]
        assert 0 <= size < 1 << 28, f"bad response size {size}"
        while len(self._buf) < 4 + size:
            self._fill(deadline)
        frame = bytes(self._buf[4 : 4 + size])
        del self._buf[: 4 + size]
        return frame

    def expect_closed(self, timeout: float = 5.0) -> None:
        """Assert the broker closes the connection without sending anything more."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
                raise AssertionError(f"expected a close, got bytes {bytes(self._buf)[:64]!r}")
        except Closed:
            return

    def request(self, api_key: int, version: int, body: Any, **kw: Any) -> Any:
        """Send one request and return the decoded response (checks the correlation id)."""
        corr = self.next_corr()
        self.send(request_frame(api_key, version, corr, body, **kw))
        got, response = parse_response(api_key, version, self.recv_frame())
        assert got == corr, f"correlation id {got}, expected {corr}"
        return response


# --- admin helpers ------------------------------------------------------------------------


def create_topic(
    conn: WireConn, name: str, partitions: int = 1, configs: dict[str, str] | None = None
) -> uuid.UUID:
    from kio.schema.create_topics.v7 import request as ct

    req = ct.CreateTopicsRequest(
        topics=(
            ct.CreatableTopic(
                name=name,
                num_partitions=partitions,
                replication_factor=1,
                assignments=(),
                configs=tuple(
                    ct.CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items()
                ),
            ),
        ),
        timeout=datetime.timedelta(seconds=10),
        validate_only=False,
    )
    resp = conn.request(19, 7, req)
    (result,) = resp.topics
    assert int(result.error_code) == 0, (result.error_code, result.error_message)
    assert result.topic_id is not None
    return result.topic_id


def high_watermark(conn: WireConn, topic: str, partition: int = 0) -> int:
    """ListOffsets v7 LATEST: the log end offset (= high watermark with one replica)."""
    req = sample_request(2, 7, topic, timestamp=-1, partition_index=partition)
    resp = conn.request(2, 7, req)
    (t,) = resp.topics
    (p,) = t.partitions
    assert int(p.error_code) == 0, p.error_code
    return int(p.offset)


def fetch_raw(conn: WireConn, topic: str, offset: int, partition: int = 0) -> bytes:
    """Fetch v12 (by name) from ``offset``; returns the partition's raw records."""
    req = sample_request(
        1,
        12,
        topic,
        fetch_offset=offset,
        partition=partition,
        max_wait=datetime.timedelta(0),
        min_bytes=0,
        max_bytes=8 << 20,
        partition_max_bytes=8 << 20,
    )
    resp = conn.request(1, 12, req)
    (t,) = resp.responses
    (p,) = t.partitions
    assert int(p.error_code) == 0, p.error_code
    return bytes(p.records or b"")


def fetch_request(
    m: Any,
    session_id: int,
    epoch: int,
    topics: tuple[Any, ...],
    forgotten: tuple[Any, ...],
    max_wait_ms: int = 0,
) -> Any:
    """A Fetch request of the schema module ``m`` in a session (or opening one): 1 MiB at most."""
    return m.FetchRequest(
        max_wait=datetime.timedelta(milliseconds=max_wait_ms),
        min_bytes=1,
        max_bytes=1 << 20,
        session_id=session_id,
        session_epoch=epoch,
        topics=topics,
        forgotten_topics_data=forgotten,
    )


def session_fetch(
    conn: WireConn,
    version: int,
    session_id: int,
    epoch: int,
    partitions: dict[int, int],
    topic: str = "",
    topic_id: uuid.UUID | None = None,
    forget: tuple[int, ...] = (),
    max_wait_ms: int = 0,
    client_id: str | None = None,
) -> Any:
    """One Fetch in a session (or opening one) naming ``partitions`` (partition -> fetch
    offset) of one topic, by name or, from v13, by id."""
    m = importlib.import_module(f"kio.schema.fetch.v{version}.request")
    name = {"topic_id": topic_id} if version >= 13 else {"topic": topic}
    wanted = tuple(
        m.FetchPartition(partition=p, fetch_offset=o, partition_max_bytes=1 << 20)
        for p, o in partitions.items()
    )
    req = fetch_request(
        m,
        session_id,
        epoch,
        (m.FetchTopic(**name, partitions=wanted),) if partitions else (),
        (m.ForgottenTopic(**name, partitions=forget),) if forget else (),
        max_wait_ms,
    )
    if client_id is not None:
        return conn.request(1, version, req, client_id=client_id)
    return conn.request(1, version, req)


def metadata_request() -> MetadataRequest:
    """A Metadata v12 request for no topic: what a client sends to learn the brokers."""
    return MetadataRequest(
        topics=(), allow_auto_topic_creation=False, include_topic_authorized_operations=False
    )


def sasl_handshake(conn: WireConn, mechanism: str, version: int = 1) -> Any:
    return conn.request(17, version, SaslHandshakeRequest(mechanism=mechanism))


def sasl_authenticate(conn: WireConn, token: bytes) -> Any:
    return conn.request(36, 2, SaslAuthenticateRequest(auth_bytes=token))


def scram_login(
    port: int, user: str, password: str, mechanism: str = "SCRAM-SHA-256", token: bool = False
) -> WireConn:
    """A raw connection to ``port`` logged in as ``user`` with SCRAM (``token``: with a
    delegation token, its id and HMAC as user and password)."""
    from artesian.security.scram import MECHANISMS, ScramClient

    conn = WireConn(port)
    assert sasl_handshake(conn, mechanism).error_code == 0
    client = ScramClient(MECHANISMS[mechanism], user, password, token=token)
    first = sasl_authenticate(conn, client.first_message())
    assert first.error_code == 0, first.error_message
    final = sasl_authenticate(conn, client.final_message(first.auth_bytes))
    assert final.error_code == 0, final.error_message
    return conn
