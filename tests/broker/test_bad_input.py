"""Hostile and malformed requests over a raw socket: each gets its exact error code, or the
offending connection (only that one) is closed with a log line, and the broker lives on."""

from __future__ import annotations

import datetime
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from artesian.protocol.compression import compress
from tests.broker_process import BrokerProcess
from tests.kafka_wire import (
    Closed,
    WireConn,
    create_topic,
    encode_body,
    fetch_raw,
    high_watermark,
    parse_response,
    request_frame,
    sample_request,
    tagged_fields,
)
from tests.storage.batches import (
    Rec,
    batch_of,
    decode_batches,
    encode_record,
    make_batch,
    zstd_zeros,
)

MAX_REQUEST = 1 << 20
BROKER_MAX_MESSAGE = 4000
SETTINGS = {
    "socket.request.max.bytes": str(MAX_REQUEST),
    "message.max.bytes": str(BROKER_MAX_MESSAGE),
    "auto.create.topics.enable": "false",
}

PRODUCE, FETCH, LIST_OFFSETS, METADATA, API_VERSIONS = 0, 1, 2, 3, 18
NONE, CORRUPT_MESSAGE, UNKNOWN_TOPIC = 0, 2, 3
MESSAGE_TOO_LARGE, INVALID_REQUIRED_ACKS, UNSUPPORTED_VERSION = 10, 21, 35
INVALID_RECORD, UNKNOWN_TOPIC_ID = 87, 100


@pytest.fixture(scope="module")
def mbroker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker for the module (startup costs ~1 s), with small limits."""
    proc = BrokerProcess(tmp_path_factory.mktemp("bad-input") / "broker", SETTINGS).start()
    yield proc
    try:
        proc.stop()
    except Exception:
        proc.kill9()


@pytest.fixture(autouse=True)
def _broker_log_on_failure(
    request: pytest.FixtureRequest, mbroker: BrokerProcess
) -> Iterator[None]:
    request.node._brokers = [mbroker]
    yield
    assert mbroker.alive(), "the broker died"


@pytest.fixture
def conn(mbroker: BrokerProcess) -> Iterator[WireConn]:
    with WireConn(mbroker.port) as c:
        yield c


_topic_seq = iter(range(1_000_000))


def new_topic(conn: WireConn, configs: dict[str, str] | None = None) -> tuple[str, uuid.UUID]:
    name = f"bad-input-{next(_topic_seq)}"
    return name, create_topic(conn, name, 1, configs)


def log_offset(proc: BrokerProcess) -> int:
    return proc.log_path.stat().st_size


def wait_for_log(proc: BrokerProcess, since: int, needle: str, timeout: float = 5.0) -> str:
    """The first new log line containing ``needle``."""
    deadline = time.monotonic() + timeout
    while True:
        with open(proc.log_path, "rb") as f:
            f.seek(since)
            for line in f.read().decode(errors="replace").splitlines():
                if needle in line:
                    return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no log line with {needle!r}:\n{proc.log_tail(20)}")
        time.sleep(0.05)


def produce_frame(
    corr: int,
    topic: str,
    records: bytes | None,
    *,
    version: int = 9,
    acks: int = -1,
    topic_id: uuid.UUID | None = None,
) -> bytes:
    req = sample_request(PRODUCE, version, topic, topic_id, acks=acks, records=records)
    return request_frame(PRODUCE, version, corr, req)


def produce(conn: WireConn, topic: str, records: bytes | None, **kw: object) -> object:
    """Send one Produce; return its only partition response."""
    version = int(kw.get("version", 9))  # type: ignore[call-overload]
    corr = conn.next_corr()
    conn.send(produce_frame(corr, topic, records, **kw))  # type: ignore[arg-type]
    got, resp = parse_response(PRODUCE, version, conn.recv_frame())
    assert got == corr
    (t,) = resp.responses
    (p,) = t.partition_responses
    assert p.index == 0
    return p


# --- record validation --------------------------------------------------------------------


@pytest.mark.parametrize("version", [3, 9, 13])
def test_bad_crc_is_corrupt_message_and_nothing_is_appended(conn: WireConn, version: int) -> None:
    topic, topic_id = new_topic(conn)
    good = make_batch(n=3)
    p = produce(conn, topic, bytes(good), version=version, topic_id=topic_id)
    assert (int(p.error_code), p.base_offset) == (NONE, 0)
    assert high_watermark(conn, topic) == 3

    bad = make_batch(n=2, value_size=20)
    bad[70] ^= 0x01  # a byte of the first record: covered by the CRC
    p = produce(conn, topic, bytes(bad), version=version, topic_id=topic_id)
    assert int(p.error_code) == CORRUPT_MESSAGE
    assert p.base_offset == -1
    # Two batches for one partition: Kafka allows exactly one from Produce v3 (INVALID_RECORD),
    # and nothing of either is appended.
    p = produce(
        conn, topic, bytes(make_batch(n=1)) + bytes(bad), version=version, topic_id=topic_id
    )
    assert int(p.error_code) == INVALID_RECORD
    assert high_watermark(conn, topic) == 3

    stored = fetch_raw(conn, topic, 0)
    expected = bytearray(good)
    struct.pack_into(">q", expected, 0, 0)
    assert stored[:12] == bytes(expected[:12])
    assert stored[16:] == bytes(expected[16:])  # all but the leader epoch the broker stamps
    assert [r[3] for b in decode_batches(stored) for r in b.records] == [
        b"v0........",
        b"v1........",
        b"v2........",
    ]


def test_batch_over_max_message_bytes(mbroker: BrokerProcess, conn: WireConn) -> None:
    # Broker-level message.max.bytes=4000 is every topic's default max.message.bytes.
    plain, _ = new_topic(conn)
    small, _ = new_topic(conn, {"max.message.bytes": "1000"})
    big, _ = new_topic(conn, {"max.message.bytes": "20000"})
    b3000 = bytes(make_batch(n=1, value_size=3000))
    b5000 = bytes(make_batch(n=1, value_size=5000))
    assert 3000 < len(b3000) < BROKER_MAX_MESSAGE < len(b5000) < 20000

    assert int(produce(conn, plain, b3000).error_code) == NONE
    assert int(produce(conn, plain, b5000).error_code) == MESSAGE_TOO_LARGE
    assert int(produce(conn, small, b3000).error_code) == MESSAGE_TOO_LARGE
    assert int(produce(conn, big, b5000).error_code) == NONE  # the topic override wins
    assert [high_watermark(conn, t) for t in (plain, small, big)] == [1, 0, 1]


def test_topic_config_change_applies_to_produce(conn: WireConn) -> None:
    from kio.schema.incremental_alter_configs.v1 import request as iac

    topic, _ = new_topic(conn)
    b3000 = bytes(make_batch(n=1, value_size=3000))
    req = iac.IncrementalAlterConfigsRequest(
        resources=(
            iac.AlterConfigsResource(
                resource_type=2,
                resource_name=topic,
                configs=(
                    iac.AlterableConfig(name="max.message.bytes", config_operation=0, value="500"),
                ),
            ),
        ),
        validate_only=False,
    )
    resp = conn.request(44, 1, req)
    assert [int(r.error_code) for r in resp.responses] == [NONE]
    assert int(produce(conn, topic, b3000).error_code) == MESSAGE_TOO_LARGE
    assert high_watermark(conn, topic) == 0


def test_produce_acks_5_is_invalid_required_acks(conn: WireConn) -> None:
    topic, _ = new_topic(conn)
    p = produce(conn, topic, bytes(make_batch(n=1)), acks=5)
    assert (int(p.error_code), p.base_offset) == (INVALID_REQUIRED_ACKS, -1)
    assert high_watermark(conn, topic) == 0


def test_produce_null_records_is_invalid_record(conn: WireConn) -> None:
    topic, _ = new_topic(conn)
    p = produce(conn, topic, None)
    assert (int(p.error_code), p.base_offset) == (INVALID_RECORD, -1)
    assert high_watermark(conn, topic) == 0


def test_produce_to_unknown_topic(conn: WireConn) -> None:
    p = produce(conn, "no-such-topic", bytes(make_batch(n=1)))
    assert (int(p.error_code), p.base_offset) == (UNKNOWN_TOPIC, -1)
    # v13 names topics by id.
    p = produce(conn, "", bytes(make_batch(n=1)), version=13, topic_id=uuid.uuid4())
    assert (int(p.error_code), p.base_offset) == (UNKNOWN_TOPIC_ID, -1)


# --- framing and headers ------------------------------------------------------------------


def test_frame_over_socket_request_max_bytes_closes_only_that_connection(
    mbroker: BrokerProcess, conn: WireConn
) -> None:
    since = log_offset(mbroker)
    with WireConn(mbroker.port) as other:
        assert other.request(API_VERSIONS, 0, sample_request(API_VERSIONS, 0, "")).error_code == 0
        # Only the size prefix: the broker must refuse before reading (or allocating) the body.
        conn.send(struct.pack(">i", MAX_REQUEST + 1))
        conn.expect_closed()
        line = wait_for_log(mbroker, since, "exceeds socket.request.max.bytes")
        assert (
            f"frame of {MAX_REQUEST + 1} bytes exceeds socket.request.max.bytes={MAX_REQUEST}"
            in line
        )
        resp = other.request(METADATA, 12, sample_request(METADATA, 12, "", topics=None))
        assert resp.brokers[0].port == mbroker.port
    # Exactly at the limit is still accepted (the body here is a valid ApiVersions request).
    with WireConn(mbroker.port) as c:
        body = request_frame(API_VERSIONS, 0, 7, b"")[4:]
        c.send(struct.pack(">i", MAX_REQUEST) + body + bytes(MAX_REQUEST - len(body)))
        corr, resp = parse_response(API_VERSIONS, 0, c.recv_frame())
        assert (corr, int(resp.error_code)) == (7, 0)


def test_negative_frame_size_closes(mbroker: BrokerProcess, conn: WireConn) -> None:
    since = log_offset(mbroker)
    conn.send(struct.pack(">i", -2))
    conn.expect_closed()
    wait_for_log(mbroker, since, "negative frame size -2")


def test_zero_length_frame_closes(mbroker: BrokerProcess, conn: WireConn) -> None:
    since = log_offset(mbroker)
    conn.send(struct.pack(">i", 0))
    conn.expect_closed()
    wait_for_log(mbroker, since, "malformed request header (frame too short")


def test_client_id_running_past_the_frame_closes(mbroker: BrokerProcess, conn: WireConn) -> None:
    since = log_offset(mbroker)
    payload = struct.pack(">hhih", METADATA, 1, 1, 100) + b"short"
    conn.send(struct.pack(">i", len(payload)) + payload)
    conn.expect_closed()
    wait_for_log(mbroker, since, "malformed request header (client_id runs past the frame)")


def test_unknown_api_key_closes(mbroker: BrokerProcess, conn: WireConn) -> None:
    since = log_offset(mbroker)
    conn.send(request_frame(999, 0, 1, b""))
    conn.expect_closed()
    wait_for_log(mbroker, since, "unknown API key 999")


def _api_table(resp: object) -> list[tuple[int, int, int]]:
    return [(k.api_key, k.min_version, k.max_version) for k in resp.api_keys]  # type: ignore[attr-defined]


@pytest.mark.parametrize("version", [5, 99, 32767, -1])
def test_api_versions_unknown_version_gets_v0_fallback(conn: WireConn, version: int) -> None:
    table = _api_table(conn.request(API_VERSIONS, 0, sample_request(API_VERSIONS, 0, "")))
    assert (API_VERSIONS, 0, 4) in table
    assert (PRODUCE, 0, 13) in table
    assert (METADATA, 0, 13) in table
    # A newer client sends its own (flexible) encoding: header v2, then a v3+ body.
    header_tags = tagged_fields([]) if version > 4 else None
    body = encode_body(sample_request(API_VERSIONS, 3, "")) if version > 4 else b""
    conn.send(request_frame(API_VERSIONS, version, 4242, body, header_tags=header_tags))
    frame = conn.recv_frame()
    # Exact bytes: v0 response (header v0), error 35, then every API's range.
    expected = struct.pack(">ihi", 4242, UNSUPPORTED_VERSION, len(table))
    expected += b"".join(struct.pack(">hhh", *row) for row in table)
    assert frame == expected
    # The connection stays usable: the client retries with a version we know.
    resp = conn.request(API_VERSIONS, 3, sample_request(API_VERSIONS, 3, ""))
    assert int(resp.error_code) == NONE
    assert _api_table(resp) == table


@pytest.mark.parametrize(
    ("api_key", "version", "name"),
    [
        (METADATA, 99, "metadata"),
        (FETCH, 3, "fetch"),
        (PRODUCE, 14, "produce"),
        (LIST_OFFSETS, 0, "list_offsets"),
    ],
)
def test_unsupported_version_of_other_apis_closes(
    mbroker: BrokerProcess, conn: WireConn, api_key: int, version: int, name: str
) -> None:
    # Like Kafka: only ApiVersions has a version-independent error response; other APIs at a
    # version we (and kio) have no schema for cannot be answered, so the connection closes.
    since = log_offset(mbroker)
    conn.send(request_frame(api_key, version, 1, b"\x00" * 16))
    conn.expect_closed()
    wait_for_log(mbroker, since, f"cannot answer {name} v{version}")


def test_produce_v2_closes_with_a_log_line(mbroker: BrokerProcess, conn: WireConn) -> None:
    since = log_offset(mbroker)
    conn.send(request_frame(PRODUCE, 2, 1, struct.pack(">hii", 1, 1000, 0)))
    conn.expect_closed()
    wait_for_log(mbroker, since, "Produce v2 uses message format v0/v1")


# --- malformed bodies ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "body", "reason"),
    [
        # Metadata v4 topics count near 2**31 in a tiny frame.
        (4, struct.pack(">i", 2**31 - 1) + b"\x00", "array count 2147483647 exceeds"),
        # A topic name whose length runs past the frame.
        (4, struct.pack(">ih", 1, 300) + b"abc", "length 300 exceeds"),
        # Flexible: compact array count 2**31 as a uvarint.
        (12, b"\x81\x80\x80\x80\x08" + b"\x00\x00", "array count 2147483648 exceeds"),
        # Truncated right after the topics array.
        (12, b"\x01", "truncated"),
    ],
)
def test_malformed_body_closes_the_connection(
    mbroker: BrokerProcess, conn: WireConn, version: int, body: bytes, reason: str
) -> None:
    since = log_offset(mbroker)
    conn.send(request_frame(METADATA, version, 1, body))
    conn.expect_closed()
    line = wait_for_log(mbroker, since, f"malformed metadata v{version} request")
    assert reason in line


@pytest.mark.parametrize(
    "tail",
    [
        struct.pack(">i", 2**31 - 1),  # topics count near 2**31
        struct.pack(">i", 1) + struct.pack(">h", 5) + b"ab",  # topic name past the frame
        struct.pack(">i", 1) + struct.pack(">h", 2) + b"ab" + struct.pack(">i", 2**31 - 2),
        struct.pack(">i", 1) + struct.pack(">h", 2) + b"ab" + struct.pack(">i", 1) + b"\x00\x00",
    ],
)
def test_malformed_produce_closes_the_connection(
    mbroker: BrokerProcess, conn: WireConn, tail: bytes
) -> None:
    since = log_offset(mbroker)
    body = struct.pack(">hhi", -1, -1, 1000) + tail  # v3: null transactional id, acks, timeout
    conn.send(request_frame(PRODUCE, 3, 1, body))
    conn.expect_closed()
    wait_for_log(mbroker, since, "malformed produce v3 request")


def test_produce_records_length_past_frame_closes(mbroker: BrokerProcess, conn: WireConn) -> None:
    topic, _ = new_topic(conn)
    frame = bytearray(produce_frame(1, topic, bytes(make_batch(n=1)), version=3))
    batch_len = len(make_batch(n=1))
    # The records length field sits right before the batch, at the end of the frame.
    pos = len(frame) - batch_len - 4
    assert struct.unpack_from(">i", frame, pos)[0] == batch_len
    struct.pack_into(">i", frame, pos, batch_len + 1)
    conn.send(bytes(frame))
    conn.expect_closed()
    with WireConn(mbroker.port) as c:
        assert high_watermark(c, topic) == 0


# --- protocol behaviours ------------------------------------------------------------------


def test_pipelined_requests_are_answered_in_order(conn: WireConn) -> None:
    topic, _ = new_topic(conn)
    batch = bytes(make_batch(n=2))
    plan = [
        (API_VERSIONS, 3, sample_request(API_VERSIONS, 3, "")),
        (METADATA, 12, sample_request(METADATA, 12, topic)),
        (PRODUCE, 9, None),  # acks=1
        (PRODUCE, 9, "acks0"),  # acks=0: no response at all
        (FETCH, 12, sample_request(FETCH, 12, topic, max_wait=datetime.timedelta(0))),
        (LIST_OFFSETS, 7, sample_request(LIST_OFFSETS, 7, topic)),
        (API_VERSIONS, 0, sample_request(API_VERSIONS, 0, "")),
        (METADATA, 1, sample_request(METADATA, 1, topic)),
    ] * 3
    data = bytearray()
    expected: list[tuple[int, int, int]] = []
    for i, (key, version, req) in enumerate(plan):
        corr = 1000 + i
        if key == PRODUCE:
            acks = 0 if req == "acks0" else 1
            data += produce_frame(corr, topic, batch, acks=acks)
            if acks:
                expected.append((corr, key, version))
        else:
            data += request_frame(key, version, corr, req)
            expected.append((corr, key, version))
    conn.send(bytes(data))
    produced = []
    for corr, key, version in expected:
        got, resp = parse_response(key, version, conn.recv_frame())
        assert got == corr
        if key == PRODUCE:
            (p,) = resp.responses[0].partition_responses
            assert int(p.error_code) == NONE
            produced.append(p.base_offset)
    # Each acks=1 produce follows an acks=0 one of 2 records: offsets show the order held.
    assert produced == [0, 4, 8]
    assert high_watermark(conn, topic) == 12


def test_pipelined_then_malformed_answers_the_good_ones_first(conn: WireConn) -> None:
    data = b"".join(
        request_frame(API_VERSIONS, 0, corr, b"") for corr in (1, 2, 3)
    ) + request_frame(METADATA, 4, 4, struct.pack(">i", 2**31 - 1))
    conn.send(data + request_frame(API_VERSIONS, 0, 5, b""))
    for corr in (1, 2, 3):
        got, resp = parse_response(API_VERSIONS, 0, conn.recv_frame())
        assert (got, int(resp.error_code)) == (corr, NONE)
    conn.expect_closed()


UNKNOWN_TAGS = tagged_fields([(1000, b"ignored"), (70000, bytes(300))])


def _with_top_level_tags(body: bytes) -> bytes:
    assert body[-1] == 0, "expected an empty top-level tag section"
    return body[:-1] + UNKNOWN_TAGS


def test_unknown_tagged_fields_are_skipped(conn: WireConn) -> None:
    topic, _ = new_topic(conn)
    body = encode_body(sample_request(METADATA, 12, topic))
    # The topic entry's tag section sits right before the 2 trailing bools and top-level tags.
    assert body[-4] == 0
    tagged_body = body[:-4] + UNKNOWN_TAGS + body[-3:-1] + UNKNOWN_TAGS
    conn.send(request_frame(METADATA, 12, 77, body))
    plain = conn.recv_frame()
    conn.send(request_frame(METADATA, 12, 77, tagged_body, header_tags=UNKNOWN_TAGS))
    assert conn.recv_frame() == plain
    _, resp = parse_response(METADATA, 12, plain)
    assert [(t.name, int(t.error_code), len(t.partitions)) for t in resp.topics] == [(topic, 0, 1)]

    # The hand-written Produce decoder skips them too, at every level.
    batch = bytes(make_batch(n=1))
    frame = bytearray(produce_frame(5, topic, batch, version=9))
    # Layout of the v9 body end: records, partition tags(0), topic tags(0), request tags(0).
    assert frame[-3:] == b"\x00\x00\x00"
    payload = bytes(frame[4:-3]) + UNKNOWN_TAGS * 3
    hdr_end = 4 + 2 + 2 + 4 + 2 + len("kafka-wire")  # size, key, version, corr, client id
    payload = payload[: hdr_end - 4] + UNKNOWN_TAGS + payload[hdr_end - 4 + 1 :]
    conn.send(struct.pack(">i", len(payload)) + payload)
    got, resp = parse_response(PRODUCE, 9, conn.recv_frame())
    (p,) = resp.responses[0].partition_responses
    assert (got, int(p.error_code), p.base_offset) == (5, NONE, 0)

    # ApiVersions v3 (header v2) with unknown tags everywhere.
    body = _with_top_level_tags(encode_body(sample_request(API_VERSIONS, 3, "")))
    conn.send(request_frame(API_VERSIONS, 3, 9, body, header_tags=UNKNOWN_TAGS))
    got, resp = parse_response(API_VERSIONS, 3, conn.recv_frame())
    assert (got, int(resp.error_code)) == (9, NONE)


def test_known_tagged_field_with_wrong_size_closes(mbroker: BrokerProcess, conn: WireConn) -> None:
    # Fetch v12 tag 0 is cluster_id (a compact nullable string): "ab" plus a stray byte.
    body = encode_body(sample_request(FETCH, 12, "x", max_wait=datetime.timedelta(0)))
    bad = _with_top_level_tags(body)[: -len(UNKNOWN_TAGS)] + tagged_fields([(0, b"\x03ab!")])
    since = log_offset(mbroker)
    conn.send(request_frame(FETCH, 12, 1, bad))
    conn.expect_closed()
    wait_for_log(mbroker, since, "tagged field 0 has a wrong size")


def test_broker_still_serves_after_all_this(mbroker: BrokerProcess) -> None:
    assert mbroker.alive()
    with WireConn(mbroker.port) as c:
        resp = c.request(API_VERSIONS, 3, sample_request(API_VERSIONS, 3, ""))
        assert int(resp.error_code) == NONE
        resp = c.request(METADATA, 12, sample_request(METADATA, 12, "", topics=None))
        assert resp.brokers[0].node_id == 1
        assert all(int(t.error_code) == NONE for t in resp.topics)
    with pytest.raises(Closed), WireConn(mbroker.port) as c:
        c.send(struct.pack(">i", -1))
        c.recv_frame(timeout=5)


def test_deep_pipeline_and_dribbled_bytes_keep_order(conn: WireConn) -> None:
    """200 requests in one write (past the connection's 64-request read pause), including
    Produce frames larger than the decoder's scratch buffer, then the same again dribbled a
    few bytes at a time: every response, in order."""
    topic, _ = new_topic(conn, {"max.message.bytes": "1000000"})
    big = bytes(make_batch(n=1, value_size=300_000))
    expected: list[int] = []

    def pipeline(first: int) -> bytes:
        out = bytearray()
        for i in range(first, first + 200):
            if i % 50 == 7:
                out += produce_frame(i, topic, big, acks=1)
            else:
                out += request_frame(API_VERSIONS, 0, i, b"")
            expected.append(i)
        return bytes(out)

    def check_responses() -> None:
        for corr in expected:
            frame = conn.recv_frame()
            if corr % 50 == 7:
                got, resp = parse_response(PRODUCE, 9, frame)
                assert int(resp.responses[0].partition_responses[0].error_code) == NONE
            else:
                got, resp = parse_response(API_VERSIONS, 0, frame)
                assert int(resp.error_code) == NONE
            assert got == corr

    conn.send(pipeline(0))
    check_responses()
    expected.clear()
    data = pipeline(1000)
    pos, step = 0, 1
    while pos < len(data):
        n = step if pos < 20_000 or pos > len(data) - 20_000 else 65_536
        conn.send(data[pos : pos + n])
        pos += n
        step = step % 7 + 1
    check_responses()
    assert high_watermark(conn, topic) == 8
    stored = decode_batches(fetch_raw(conn, topic, 7))
    assert [len(b.records[0][3] or b"") for b in stored] == [300_000]


@pytest.mark.parametrize("name", ["", "-leading-dash", "has space", "trailing."])
def test_api_versions_rejects_invalid_client_software_name(conn: WireConn, name: str) -> None:
    """KIP-511: ApiVersions v3+ names the client; a malformed name is INVALID_REQUEST (42)."""
    req = sample_request(API_VERSIONS, 3, "", client_software_name=name)
    resp = conn.request(API_VERSIONS, 3, req)
    assert int(resp.error_code) == 42
    assert resp.api_keys == ()
    ok = conn.request(
        API_VERSIONS, 3, sample_request(API_VERSIONS, 3, "", client_software_name="my-client.py")
    )
    assert int(ok.error_code) == 0 and len(ok.api_keys) > 10


def test_idle_connection_is_closed_after_connections_max_idle_ms(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    broker = broker_factory({"connections.max.idle.ms": "1000"})
    with WireConn(broker.port) as idle, WireConn(broker.port) as active:
        idle.request(API_VERSIONS, 0, sample_request(API_VERSIONS, 0, ""))
        # The active one keeps talking past the latest the idle one may be closed (the limit,
        # plus the broker's check interval of half of it).
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            active.request(API_VERSIONS, 0, sample_request(API_VERSIONS, 0, ""))
            time.sleep(0.2)
        idle.expect_closed(timeout=2)
        active.request(API_VERSIONS, 0, sample_request(API_VERSIONS, 0, ""))
    assert "idle for more than connections.max.idle.ms" in broker.log_tail()


def test_a_pipeline_of_large_produces_past_the_byte_pause_is_all_answered(
    conn: WireConn,
) -> None:
    """40 Produce requests of 900 kB in one write, 36 MB, past the 8 MiB of requests a
    connection reads ahead before it waits: every one answered in order, at its offset."""
    topic, _ = new_topic(conn, {"max.message.bytes": "1000000"})
    batch = bytes(make_batch(n=1, value_size=900_000))
    frames = b"".join(produce_frame(i, topic, batch, acks=1) for i in range(40))
    sender = threading.Thread(target=conn.send, args=(frames,), daemon=True)
    sender.start()
    for i in range(40):
        got, resp = parse_response(PRODUCE, 9, conn.recv_frame(timeout=30))
        partition = resp.responses[0].partition_responses[0]
        assert (got, int(partition.error_code), partition.base_offset) == (i, NONE, i)
    sender.join(30)
    assert not sender.is_alive()
    assert high_watermark(conn, topic) == 40


# --- records the broker must not take --------------------------------------------------------

ZSTD_ZEROS_1GIB = zstd_zeros(1 << 30)
GOOD_RECORD = encode_record(0, 0, Rec(b"k", b"value", 1_700_000_000_000))
INVALID_TIMESTAMP, UNSUPPORTED_COMPRESSION_TYPE = 32, 76


def _with(batch: bytearray, offset: int, fmt: str, value: int) -> bytes:
    struct.pack_into(fmt, batch, offset, value)
    return bytes(batch)


# (records, Produce version, error code, part of the message), as Kafka answers each.
REFUSED: dict[str, tuple[Callable[[], bytes], int, int, str]] = {
    "garbage records, good CRC": (
        lambda: bytes(batch_of(b"\xff" * 100, 1)),
        9,
        INVALID_RECORD,
        "varint is too long",
    ),
    "a record and zeros claiming 5": (
        lambda: bytes(batch_of(GOOD_RECORD + bytes(40), 5)),
        9,
        INVALID_RECORD,
        "length 0",
    ),
    "gzip of garbage": (
        lambda: bytes(batch_of(compress(1, b"\xff" * 100), 1, codec=1)),
        9,
        INVALID_RECORD,
        "varint is too long",
    ),
    "1 GiB zstd bomb claiming 2^31-1": (
        lambda: bytes(batch_of(ZSTD_ZEROS_1GIB, 2**31 - 1, codec=4)),
        9,
        INVALID_RECORD,
        "decompresses to more than",
    ),
    "codec 7": (lambda: bytes(batch_of(GOOD_RECORD, 1, codec=7)), 9, INVALID_RECORD, "codec 7"),
    "baseOffset 5": (
        lambda: bytes(make_batch(n=2, base_offset=5)),
        9,
        INVALID_RECORD,
        "should be 0",
    ),
    "LogAppendTime from the producer": (
        lambda: bytes(make_batch(n=2, attributes=0x08)),
        9,
        INVALID_TIMESTAMP,
        "Producer should not set timestamp type to LogAppendTime",
    ),
    "zstd before Produce v7": (
        lambda: bytes(make_batch(n=2, codec=4)),
        5,
        UNSUPPORTED_COMPRESSION_TYPE,
        "not allowed to use ZStandard",
    ),
    "magic 1": (lambda: _with(make_batch(n=2), 16, ">b", 1), 9, INVALID_RECORD, "magic version 2"),
    "a batch cut short": (
        lambda: bytes(make_batch(n=3))[:-5],
        9,
        INVALID_RECORD,
        "at least one record batch",
    ),
    "negative batch length": (
        lambda: _with(make_batch(n=2), 8, ">i", -1),
        9,
        CORRUPT_MESSAGE,
        "Record size -1",
    ),
    "junk after the batch that reads as a size": (
        lambda: bytes(make_batch(n=2)) + bytes(12),
        9,
        CORRUPT_MESSAGE,
        "Record size 0",
    ),
}


@pytest.mark.parametrize("compacted", [False, True])
@pytest.mark.parametrize("case", REFUSED)
def test_records_kafka_refuses_are_refused_and_nothing_is_appended(
    mbroker: BrokerProcess, conn: WireConn, case: str, compacted: bool
) -> None:
    """Each malformed or forbidden batch gets Kafka's error code, nothing reaches the log,
    and the partition takes the next good batch at offset 0. A compacted topic, which reads
    every key, refuses them the same way."""
    records, version, code, message = REFUSED[case]
    configs = {"max.message.bytes": "1000000"}
    if compacted:
        configs["cleanup.policy"] = "compact"
    topic, topic_id = new_topic(conn, configs)
    p = produce(conn, topic, records(), version=version, topic_id=topic_id)
    assert (int(p.error_code), p.base_offset) == (code, -1)
    if version >= 8:  # error messages came with v8
        assert message in (p.error_message or "")
    assert high_watermark(conn, topic) == 0
    good = make_batch(n=2)
    p = produce(conn, topic, bytes(good), topic_id=topic_id)
    assert (int(p.error_code), p.base_offset) == (NONE, 0)
    assert [r[3] for b in decode_batches(fetch_raw(conn, topic, 0)) for r in b.records] == [
        b"v0........",
        b"v1........",
    ]


def test_a_partial_batch_after_the_batch_is_dropped(conn: WireConn) -> None:
    """Bytes after the one batch that do not make another are trimmed, as Kafka's log does."""
    topic, topic_id = new_topic(conn)
    good = make_batch(n=3)
    p = produce(conn, topic, bytes(good) + b"\x00" * 10, topic_id=topic_id)
    assert (int(p.error_code), p.base_offset) == (NONE, 0)
    assert high_watermark(conn, topic) == 3
    stored = fetch_raw(conn, topic, 0)
    assert len(stored) == len(good)
    assert stored[61:] == bytes(good[61:])


def test_a_compressed_batch_of_millions_of_records_does_not_hold_up_other_clients(
    mbroker: BrokerProcess, conn: WireConn
) -> None:
    """A 30 KB zstd batch holding 4,000,000 tiny records takes the broker seconds to read;
    it reads them off its event loop, so another client's Metadata is answered meanwhile,
    before the batch's own answer (which takes the records: they are well-formed)."""
    import select

    topic, topic_id = new_topic(conn, {"max.message.bytes": "1000000"})
    record = b"\x0c\x00\x00\x00\x01\x01\x00"  # 6 bytes of body: no key, no value
    count = 4_000_000
    batch = bytes(batch_of(compress(4, record * count), count, codec=4))
    assert len(batch) < 100_000
    conn.send(produce_frame(conn.next_corr(), topic, batch, topic_id=topic_id))
    time.sleep(0.2)  # the batch reached the broker
    with WireConn(mbroker.port) as other:
        answer = other.request(METADATA, 12, sample_request(METADATA, 12, topic))
        assert answer.topics[0].name == topic
        waiting, _, _ = select.select([conn.sock], [], [], 0)
        assert not waiting, "the batch was answered before another client's Metadata"
    _, resp = parse_response(PRODUCE, 9, conn.recv_frame(timeout=120))
    (p,) = resp.responses[0].partition_responses
    assert (int(p.error_code), p.base_offset) == (NONE, 0)
    assert high_watermark(conn, topic) == count
