"""Mutation fuzzing over many raw connections while a real client produces and consumes.

At least 10,000 mutated frames (bit flips, truncation, splicing, counts near 2**31, lengths of
-2 or huge, unknown tagged fields, random API keys and versions, bad CRCs, wrong frame sizes)
are built from valid encodings of every API the broker serves. After each framed one, the
same connection sends a known ApiVersions probe: the broker must either close that connection
or answer the mutated frame with a well-formed response and then the probe, byte for byte.
Meanwhile confluent-kafka produces unique payloads to a topic the fuzzer never names; every
one must be consumed back at offsets 0..N-1 with exact bytes, before and after a restart.
"""

from __future__ import annotations

import collections
import datetime
import os
import random
import socket
import struct
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

from artesian.protocol import api
from tests.broker_process import BrokerProcess
from tests.kafka_wire import (
    Closed,
    WireConn,
    create_topic,
    encode_body,
    parse_response,
    request_flexible,
    request_frame,
    request_header,
    sample_request,
    tagged_fields,
)
from tests.storage.batches import make_batch

FRAMES = 15_000  # attempted; 1.5x the floor below, so that a slow machine still reaches it
MIN_FRAMES = 10_000
WORKERS = 3
TIME_LIMIT = 60.0
PROBE_TIMEOUT = 5.0
MAX_REQUEST = 1 << 20
REAL_TOPIC = "artesian-real-client-traffic"  # no base frame names it, so no mutation can
FUZZ_TOPIC = "fz-data"
ABSENT_TOPIC = "fz-none"  # what the destructive APIs (delete, alter) are aimed at
SEED = int(os.environ.get("ARTESIAN_FUZZ_SEED", "20261126"))

# API key -> versions fuzzed from valid encodings. CreateTopics (19) and CreatePartitions (37)
# are left out on purpose: nothing caps a request's partition count, so one flipped bit makes
# the controller plan ~2**30 PartitionRecords in the event loop (validate_only too), which
# stalls the broker; that is a controller limit to add, not something to fuzz into.
FUZZED_APIS = {
    0: range(3, 14),
    1: range(4, 19),
    2: range(1, 12),
    3: range(0, 14),
    18: range(0, 5),
    20: range(1, 7),
    21: range(0, 3),
    23: range(2, 5),
    32: range(1, 5),
    33: range(0, 3),
    35: range(1, 6),
    44: range(0, 2),
    60: range(0, 3),
    # Transactions: InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn,
    # TxnOffsetCommit, DescribeTransactions, ListTransactions.
    22: range(0, 7),
    24: range(0, 4),
    25: range(0, 4),
    26: range(0, 5),
    28: range(0, 4),
    65: range(0, 1),
    66: range(0, 2),
    # DescribeProducers; DescribeTopicPartitions (KIP-966), with cursors and limits.
    61: range(0, 1),
    75: range(0, 1),
    # The consumer group protocol (KIP-848): ConsumerGroupHeartbeat, ConsumerGroupDescribe.
    68: range(0, 2),
    69: range(0, 2),
    # ElectLeaders: a preferred or unclean election asked with any fields; UnregisterBroker
    # (the only registered broker is the live one answering: always refused).
    43: range(0, 3),
    64: range(0, 1),
    # Client metrics (KIP-714): GetTelemetrySubscriptions, PushTelemetry, ListConfigResources.
    71: range(0, 1),
    72: range(0, 1),
    74: range(0, 2),
    # Share groups (KIP-932): ShareGroupHeartbeat, ShareGroupDescribe, ShareFetch,
    # ShareAcknowledge, the share state APIs between brokers, and the share group offsets.
    76: range(1, 2),
    77: range(1, 2),
    78: range(1, 2),
    79: range(1, 2),
    83: range(0, 1),
    84: range(0, 1),
    85: range(0, 1),
    86: range(0, 1),
    87: range(0, 2),
    90: range(0, 2),
    91: range(0, 1),
    92: range(0, 1),
    # Delegation tokens (KIP-48): refused on PLAINTEXT after decoding, durations included.
    38: range(1, 4),
    39: range(1, 3),
    40: range(1, 3),
    41: range(1, 4),
}
# Keys a mutation must never turn a frame into (see above; 20 so nothing can be spliced into
# deleting the fuzz topic).
FORBIDDEN_KEYS = {19, 20, 37}
RANDOM_KEYS = [k for k in FUZZED_APIS if k not in FORBIDDEN_KEYS] + [-1, 4, 99, 999, 32767]
RANDOM_VERSIONS = [-1, 0, 1, 2, 3, 4, 5, 9, 12, 13, 14, 17, 18, 19, 99, 32767]


@dataclass
class Base:
    api_key: int
    version: int
    header_len: int
    payload: bytes  # request header + body, no size prefix
    batch_at: int = -1  # where the record batch starts (Produce), else -1
    batch_len: int = 0
    silent: bool = False  # acks=0 Produce: never answered
    entity: Any = None  # the request, for field-level mutations


def build_corpus(topic_id: uuid.UUID, rng: random.Random) -> list[Base]:
    corpus = []
    for key, versions in FUZZED_APIS.items():
        for version in versions:
            for variant in range(3 if key == 0 else 1):
                topic, tid, kw = FUZZ_TOPIC, topic_id, {}
                if key in (20, 33, 44):
                    topic, tid = ABSENT_TOPIC, uuid.uuid4()
                if key == 1:
                    kw = {"max_wait": datetime.timedelta(0), "min_bytes": 0, "max_bytes": 1 << 16}
                if key == 3:
                    kw = {"allow_auto_topic_creation": False}
                batch = b""
                if key == 0:
                    kw = {"acks": (-1, 1, 0)[variant]}
                    batch = bytes(
                        make_batch(n=rng.randint(1, 3), timestamp=int(time.time() * 1000))
                    )
                req = sample_request(key, version, topic, tid, batch or None, **kw)
                header = request_header(key, version, 0)
                body = encode_body(req)
                base = Base(key, version, len(header), header + body, entity=req)
                base.silent = key == 0 and kw["acks"] == 0
                if batch:
                    base.batch_at = base.payload.index(batch)
                    base.batch_len = len(batch)
                corpus.append(base)
    return corpus


# --- mutations ----------------------------------------------------------------------------

INTERESTING_I32 = [2**31 - 1, 2**31 - 2, 2**30, -2, -(2**31), 0x7FFFFF00, 65536]
INTERESTING_I16 = [-2, 0x7FFF, -(2**15), 0x7FFE]
HUGE_UVARINTS = [
    b"\xff\xff\xff\xff\x07",
    b"\x80\x80\x80\x80\x08",
    b"\xff\xff\xff\xff\xff\xff\xff\xff\x7f",
]


def _body_pos(rng: random.Random, base: Base, data: bytearray) -> int:
    lo = min(base.header_len, len(data) - 1)
    return rng.randrange(max(lo, 0), len(data)) if data else 0


def m_bitflip(rng: random.Random, base: Base, data: bytearray, corpus: list[Base]) -> str:
    for _ in range(rng.randint(1, 8)):
        pos = _body_pos(rng, base, data)
        if pos < len(data):
            data[pos] ^= 1 << rng.randrange(8)
    return "bitflip"


def m_setbyte(rng: random.Random, base: Base, data: bytearray, corpus: list[Base]) -> str:
    for _ in range(rng.randint(1, 4)):
        pos = _body_pos(rng, base, data)
        if pos < len(data):
            data[pos] = rng.choice([0x00, 0xFF, 0x7F, 0x80, 0x01, rng.randrange(256)])
    return "setbyte"


def m_truncate(rng: random.Random, base: Base, data: bytearray, corpus: list[Base]) -> str:
    del data[rng.randrange(len(data)) :]
    return "truncate"


def m_splice(rng: random.Random, base: Base, data: bytearray, corpus: list[Base]) -> str:
    other = rng.choice(corpus).payload
    i = rng.randrange(len(data) + 1)
    j = rng.randrange(len(other) + 1)
    data[i:] = other[j:]
    return "splice"


def m_count_i32(rng: random.Random, base: Base, data: bytearray, corpus: list[Base]) -> str:
    pos = _body_pos(rng, base, data)
    data[pos : pos + 4] = struct.pack(">i", rng.choice(INTERESTING_I32))
    return "count_i32"


def m_length_i16(rng: random.Random, base: Base, data: bytearray, corpus: list[Base]) -> str:
    pos = _body_pos(rng, base, data)
    data[pos : pos + 2] = struct.pack(">h", rng.choice(INTERESTING_I16))
    return "length_i16"


def m_count_uvarint(rng: random.Random, base: Base, data: bytearray, corpus: list[Base]) -> str:
    pos = _body_pos(rng, base, data)
    data[pos : pos + 1] = rng.choice(HUGE_UVARINTS)
    return "count_uvarint"


def m_unknown_tags(rng: random.Random, base: Base, data: bytearray, corpus: list[Base]) -> str:
    tags = tagged_fields(
        [(rng.choice([7, 99, 1000, 2**20]), os.urandom(rng.randrange(0, 40))) for _ in range(3)]
    )
    if not request_flexible(base.api_key, base.version):
        pos = _body_pos(rng, base, data)
        data[pos:pos] = tags
        return "tags_random"
    where = rng.random()
    if where < 0.4 and len(data) >= base.header_len:
        # The header's tag section: the request must still be answered normally.
        data[base.header_len - 1 : base.header_len] = tags
        return "tags_header"
    if where < 0.7 and data and data[-1] == 0:
        data[-1:] = tags
        return "tags_top"
    pos = _body_pos(rng, base, data)
    data[pos : pos + 1] = tags
    return "tags_random"


def m_key_version(rng: random.Random, base: Base, data: bytearray, corpus: list[Base]) -> str:
    if len(data) < 4:
        return m_bitflip(rng, base, data, corpus)
    key = rng.choice(RANDOM_KEYS) if rng.random() < 0.5 else base.api_key
    struct.pack_into(">hh", data, 0, key, rng.choice(RANDOM_VERSIONS))
    return "key_version"


def m_bad_crc(rng: random.Random, base: Base, data: bytearray, corpus: list[Base]) -> str:
    # Anything from the attributes on is CRC-covered; or the CRC itself.
    pos = base.batch_at + rng.randrange(17, base.batch_len) if base.batch_at >= 0 else -1
    if not 0 <= pos < len(data) or data != base.payload:
        return m_bitflip(rng, base, data, corpus)
    data[pos] ^= 1 << rng.randrange(8)
    return "bad_crc"


_RANGES = {"int8": 7, "int16": 15, "int32": 31, "int64": 63, "timedelta_i32": 31}


def _int_paths(entity: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """Paths to every signed integer field in a request, with its Kafka type."""
    out = []
    for f in fields(entity):
        value = getattr(entity, f.name)
        kt = f.metadata.get("kafka_type")
        if kt in _RANGES and value is not None and not isinstance(value, tuple):
            out.append(((*path, f.name), kt))
        elif isinstance(value, tuple):
            for i, item in enumerate(value):
                if is_dataclass(item):
                    out += _int_paths(item, (*path, f.name, i))
        elif is_dataclass(value):
            out += _int_paths(value, (*path, f.name))
    return out


def _replace_at(entity: Any, path: tuple[Any, ...], value: Any) -> Any:
    name, rest = path[0], path[1:]
    current = getattr(entity, name)
    if not rest:
        return replace(entity, **{name: value})
    if isinstance(rest[0], int):
        items = list(current)
        items[rest[0]] = _replace_at(items[rest[0]], rest[1:], value) if rest[1:] else value
        return replace(entity, **{name: tuple(items)})
    return replace(entity, **{name: _replace_at(current, rest, value)})


def m_field(rng: random.Random, base: Base, data: bytearray, corpus: list[Base]) -> str:
    """A still-decodable request with one integer field set to an edge value: this is what
    reaches the handlers."""
    paths = _int_paths(base.entity) if data == base.payload else []
    if not paths:
        return m_bitflip(rng, base, data, corpus)
    path, kt = rng.choice(paths)
    bits = _RANGES[kt]
    value = rng.choice(
        [-1, -2, 0, 1, 2**bits - 1, -(2**bits), 2 ** (bits - 1), rng.randrange(-(2**bits), 2**bits)]
    )
    if kt == "timedelta_i32":
        value = datetime.timedelta(milliseconds=min(value, 2000))  # a long poll only delays
    try:
        mutated = _replace_at(base.entity, path, value)
        body = encode_body(mutated)
    except (TypeError, ValueError, struct.error):
        return m_bitflip(rng, base, data, corpus)
    data[base.header_len :] = body
    return "field"


MUTATORS = [
    (m_field, 25),
    (m_bitflip, 20),
    (m_setbyte, 8),
    (m_truncate, 12),
    (m_splice, 8),
    (m_count_i32, 12),
    (m_length_i16, 8),
    (m_count_uvarint, 6),
    (m_unknown_tags, 10),
    (m_key_version, 10),
    (m_bad_crc, 6),
]


def mutate(rng: random.Random, base: Base, corpus: list[Base]) -> tuple[bytearray, list[str]]:
    data = bytearray(base.payload)
    applied: list[str] = []
    funcs, weights = zip(*MUTATORS, strict=True)
    for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 3)):
        if not data:
            break
        f = rng.choices(funcs, weights)[0]
        if f is m_splice and base.api_key == 20:
            f = m_bitflip
        applied.append(f(rng, base, data, corpus))
    if len(data) >= 2:
        key = struct.unpack_from(">h", data, 0)[0]
        if key in FORBIDDEN_KEYS and key != base.api_key:
            struct.pack_into(">h", data, 0, base.api_key)
    return data, applied


# --- the fuzz workers ---------------------------------------------------------------------


@dataclass
class Stats:
    framed: int = 0
    raw: int = 0
    answered: int = 0
    closed: int = 0
    connections: int = 0
    stalls: collections.Counter[int] = field(default_factory=collections.Counter)
    kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    keys: set[tuple[int, int]] = field(default_factory=set)
    crc_checked: int = 0
    tags_checked: int = 0
    failures: list[str] = field(default_factory=list)

    def merge(self, other: Stats) -> None:
        for name in ("framed", "raw", "answered", "closed", "connections"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("crc_checked", "tags_checked"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.stalls.update(other.stalls)
        self.kinds.update(other.kinds)
        self.keys |= other.keys
        self.failures += other.failures


def _check_response(frame: bytes, data: bytes, applied: list[str], base: Base, st: Stats) -> None:
    """A response to a mutated frame must decode under the schema its header asked for."""
    if len(data) < 4:
        raise AssertionError("a response to a frame without a header")
    key, version = struct.unpack_from(">hh", data, 0)
    if key == api.API_VERSIONS_KEY and not 0 <= version <= 4:
        version = 0
        body = frame[4:]
        err, n = struct.unpack_from(">hi", body, 0)
        assert err == 35 and len(body) == 6 + 6 * n, "bad ApiVersions fallback"
        return
    _, resp = parse_response(key, version, frame)
    if key == 0 and applied == ["bad_crc"]:
        (p,) = resp.responses[0].partition_responses
        assert int(p.error_code) == 2, f"bad CRC answered with {p.error_code}"
        assert p.base_offset == -1
        st.crc_checked += 1
    elif key == 0 and applied in (["tags_header"], ["tags_top"]):
        (p,) = resp.responses[0].partition_responses
        assert int(p.error_code) == 0, f"tagged Produce answered with {p.error_code}"


def fuzz_worker(
    wid: int,
    port: int,
    corpus: list[Base],
    count: int,
    deadline: float,
    probe_body: bytes,
    st: Stats,
    stop: threading.Event,
) -> None:
    rng = random.Random(SEED * 31 + wid)
    conn: WireConn | None = None
    corr = wid * 10_000_000
    try:
        for _ in range(count):
            if stop.is_set() or time.monotonic() > deadline:
                return
            base = rng.choice(corpus)
            corr += 2
            if rng.random() < 0.12:
                st.raw += 1
                _raw_round(rng, port, base, corpus, corr, st)
                continue
            data, applied = mutate(rng, base, corpus)
            if len(data) >= 8:
                struct.pack_into(">i", data, 4, corr)
            st.framed += 1
            st.kinds.update(applied)
            if len(data) >= 4:
                st.keys.add(struct.unpack_from(">hh", data, 0))
            if conn is None:
                conn = WireConn(port, timeout=PROBE_TIMEOUT)
                st.connections += 1
            probe = request_frame(18, 0, corr + 1, b"")
            answered = False
            tags_only = applied in (["tags_header"], ["tags_top"])
            try:
                conn.send(struct.pack(">i", len(data)) + bytes(data) + probe)
                while True:
                    frame = conn.recv_frame(PROBE_TIMEOUT)
                    got = struct.unpack_from(">i", frame, 0)[0]
                    if got == corr + 1:
                        assert frame[4:] == probe_body, "probe answered with different bytes"
                        # Unknown tagged fields are skipped: the request is answered as usual
                        # (acks=0 Produce aside, which never is).
                        if tags_only and not answered:
                            assert base.silent, f"unknown tags, no answer: {bytes(data)!r}"
                        st.tags_checked += tags_only
                        break
                    assert got == corr, f"response with correlation id {got}, sent {corr}"
                    _check_response(frame, bytes(data), applied, base, st)
                    st.answered += 1
                    answered = True
            except Closed:
                assert not tags_only, f"closed on unknown tagged fields: {bytes(data)!r}"
                st.closed += 1
                conn.close()
                conn = None
            except TimeoutError:
                key = struct.unpack_from(">h", data, 0)[0] if len(data) >= 2 else -999
                st.stalls[key] += 1
                conn.close()
                conn = None
    except Exception:  # reported by the test thread
        st.failures.append(f"worker {wid}: {traceback.format_exc(limit=-3)}")
        stop.set()
    finally:
        if conn is not None:
            conn.close()


def _raw_round(
    rng: random.Random, port: int, base: Base, corpus: list[Base], corr: int, st: Stats
) -> None:
    """Wrong frame sizes and broken streams: send, half-close, read to the end."""
    payload = bytearray(base.payload)
    struct.pack_into(">i", payload, 4, corr)
    n = len(payload)
    choice = rng.randrange(7)
    if choice == 0:
        stream = struct.pack(">i", n + rng.randint(1, 200)) + payload  # claims more
    elif choice == 1:
        stream = struct.pack(">i", max(n - rng.randint(1, 20), 0)) + payload  # claims less
    elif choice == 2:
        stream = struct.pack(">i", rng.choice([-1, -2, -(2**31)])) + payload
    elif choice == 3:
        stream = struct.pack(">i", rng.choice([MAX_REQUEST + 1, 2**31 - 1])) + payload
    elif choice == 4:
        stream = struct.pack(">i", 0) + struct.pack(">i", n) + payload
    elif choice == 5:  # the stream stops mid-frame
        full = struct.pack(">i", n) + payload
        stream = full[: rng.randrange(1, len(full))]
    else:
        stream = os.urandom(rng.randint(1, 64))
    st.kinds[f"raw{choice}"] += 1
    with WireConn(port, timeout=PROBE_TIMEOUT) as conn:
        st.connections += 1
        try:
            conn.send(bytes(stream))
            conn.sock.shutdown(socket.SHUT_WR)
        except (Closed, OSError):
            st.closed += 1
            return
        while True:
            try:
                frame = conn.recv_frame(PROBE_TIMEOUT)
            except Closed:
                st.closed += 1
                return
            except TimeoutError as e:
                raise AssertionError(
                    f"raw stream kind {choice}: the broker neither answered nor closed after EOF"
                ) from e
            got = struct.unpack_from(">i", frame, 0)[0]
            # Only a frame that claimed less than it carried can yield a response.
            assert choice == 1 and got == corr, f"raw kind {choice} answered with corr {got}"
            st.answered += 1


# --- the real client ----------------------------------------------------------------------


class RealClient:
    """confluent-kafka producing unique payloads and consuming them concurrently."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.sent: list[bytes] = []
        self.delivered: dict[int, bytes] = {}
        self.errors: list[str] = []
        self.consumed: list[tuple[int, bytes]] = []
        self.stop_producing = threading.Event()
        self.expect: int | None = None
        self.threads = [
            threading.Thread(target=self._produce, daemon=True),
            threading.Thread(target=self._consume, daemon=True),
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))
        else:
            self.delivered[msg.offset()] = msg.value()

    def _produce(self) -> None:
        from confluent_kafka import Producer

        p = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "acks": "all",
                "linger.ms": 5,
                "enable.idempotence": False,
                "log_level": 0,
            }
        )
        i = 0
        while not self.stop_producing.is_set() and i < 5000:
            payload = f"real-{i:06d}-".encode() + os.urandom(i % 50)
            self.sent.append(payload)
            p.produce(REAL_TOPIC, payload, on_delivery=self._on_delivery)
            p.poll(0)
            i += 1
            time.sleep(0.003)
        left = p.flush(30)
        if left:
            self.errors.append(f"{left} messages not delivered")

    def _consume(self) -> None:
        """Consume until told how many to expect, then until that many have come."""
        self.consumed = consume_all(self.bootstrap, lambda: self.expect, TIME_LIMIT + 90)


def consume_all(
    bootstrap: str, expect: Callable[[], int | None], timeout: float = 30
) -> list[tuple[int, bytes]]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "fuzz-check",
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )
    out: list[tuple[int, bytes]] = []
    try:
        c.assign([TopicPartition(REAL_TOPIC, 0, 0)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = expect()
            if n is not None and len(out) >= n:
                break
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            out.append((m.offset(), m.value()))
    finally:
        c.close()
    return out


# --- the test -----------------------------------------------------------------------------


def _answers_api_versions_and_metadata(proc: BrokerProcess) -> None:
    with WireConn(proc.port) as c:
        resp = c.request(18, 3, sample_request(18, 3, ""))
        assert int(resp.error_code) == 0
        assert {k.api_key for k in resp.api_keys} >= set(FUZZED_APIS) | {19, 37}
        resp = c.request(3, 12, sample_request(3, 12, REAL_TOPIC))
        (t,) = resp.topics
        assert (t.name, int(t.error_code), [p.partition_index for p in t.partitions]) == (
            REAL_TOPIC,
            0,
            [0],
        )


@pytest.mark.slow
def test_fuzz_while_a_real_client_produces_and_consumes(broker_factory: Any) -> None:
    proc: BrokerProcess = broker_factory(
        {
            "socket.request.max.bytes": str(MAX_REQUEST),
            "auto.create.topics.enable": "false",
            "artesian.client.metrics.enable": "true",  # the telemetry APIs fuzzed too
            "group.share.enable": "true",  # and the share group ones
        }
    )
    with WireConn(proc.port) as c:
        create_topic(c, REAL_TOPIC)
        fuzz_id = create_topic(c, FUZZ_TOPIC)
        c.send(request_frame(18, 0, 1, b""))
        probe_body = c.recv_frame()[4:]
    rng = random.Random(SEED)
    corpus = build_corpus(fuzz_id, rng)

    client = RealClient(proc.bootstrap)
    client.start()
    stats = [Stats() for _ in range(WORKERS)]
    stop = threading.Event()
    started = time.monotonic()
    deadline = started + TIME_LIMIT
    per_worker = FRAMES // WORKERS + 1
    workers = [
        threading.Thread(
            target=fuzz_worker,
            args=(w, proc.port, corpus, per_worker, deadline, probe_body, stats[w], stop),
            daemon=True,
        )
        for w in range(WORKERS)
    ]
    for w in workers:
        w.start()
    while any(w.is_alive() for w in workers):
        assert proc.alive(), "the broker died during the fuzz"
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    client.stop_producing.set()
    st = Stats()
    for one in stats:
        st.merge(one)
    assert proc.alive(), "the broker died during the fuzz"
    if os.environ.get("FUZZ_DEBUG"):
        print(  # opt-in summary
            elapsed,
            st.framed,
            st.raw,
            st.answered,
            st.closed,
            st.crc_checked,
            st.tags_checked,
            st.stalls,
            len(client.sent),
        )
    assert not st.failures, "\n".join(st.failures)
    total = st.framed + st.raw
    assert total >= MIN_FRAMES, f"only {total} frames in {elapsed:.1f}s ({st})"
    # Every kind of mutation happened, over many API keys and versions and connections.
    assert {f.__name__[2:] for f, _ in MUTATORS} - {"unknown_tags"} <= set(st.kinds), st.kinds
    assert {"tags_header", "tags_top"} <= set(st.kinds)
    assert len({k for k, _ in st.keys}) >= 15 and len(st.keys) >= 100
    assert st.connections > 500 and st.closed > 500 and st.answered > 500
    assert st.crc_checked > 20 and st.tags_checked > 50
    # Only a Fetch may legitimately park (its max wait or min bytes may have been mutated).
    assert set(st.stalls) <= {1}, st.stalls
    assert sum(st.stalls.values()) < total // 100, st.stalls

    for t in client.threads[:1]:
        t.join(60)
    assert not client.errors, client.errors[:5]
    n = len(client.sent)
    assert n > 100
    assert sorted(client.delivered) == list(range(n))
    by_offset = [client.delivered[i] for i in range(n)]
    assert sorted(by_offset) == sorted(client.sent)
    # The concurrent consumer saw them all, in order, then a fresh one reads them again.
    client.expect = n
    client.threads[1].join(60)
    assert client.consumed == list(enumerate(by_offset))
    assert consume_all(proc.bootstrap, lambda: n) == list(enumerate(by_offset))

    assert proc.alive()
    _answers_api_versions_and_metadata(proc)
    proc.restart()
    assert consume_all(proc.bootstrap, lambda: n) == list(enumerate(by_offset))
    _answers_api_versions_and_metadata(proc)


# --- the frame decoder, sans-IO -----------------------------------------------------------

_frame_sizes = hst.one_of(
    hst.integers(0, 64), hst.integers(0, 5000), hst.integers(130_000, 300_000)
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=hst.lists(_frame_sizes, max_size=8),
    cuts=hst.lists(hst.integers(1, 70_000)),
    seed=hst.integers(0, 2**32),
)
def test_frame_decoder_reassembles_any_split(sizes: list[int], cuts: list[int], seed: int) -> None:
    from artesian.protocol.framing import FrameDecoder

    rng = random.Random(seed)
    frames = [rng.randbytes(n) for n in sizes]
    stream = b"".join(struct.pack(">i", len(f)) + f for f in frames)
    decoder = FrameDecoder(1 << 20)
    out: list[bytes] = []
    pos, i = 0, 0
    while pos < len(stream):
        # Tiny cuts, but at most ~300 feeds per example to keep the test quick.
        step = max(cuts[i % len(cuts)] if cuts else len(stream), len(stream) // 300)
        out += [bytes(f) for f in decoder.feed(stream[pos : pos + step])]
        pos += step
        i += 1
    assert out == frames


@given(size=hst.one_of(hst.integers(-(2**31), -1), hst.integers((1 << 20) + 1, 2**31 - 1)))
def test_frame_decoder_rejects_bad_sizes_from_the_prefix_alone(size: int) -> None:
    from artesian.protocol.framing import FrameDecoder, FrameTooLarge, InvalidFrameSize

    decoder = FrameDecoder(1 << 20)
    assert decoder.feed(struct.pack(">i", 3) + b"abc") == [bytearray(b"abc")]
    with pytest.raises(InvalidFrameSize if size < 0 else FrameTooLarge):
        decoder.feed(struct.pack(">i", size))


def test_decoders_raise_only_decode_error_on_mutated_frames() -> None:
    """In-process and fast: 20,000 mutated frames through the header parser and every API's
    decoder. connection.py closes on DecodeError; anything else would escape its guard."""
    from artesian.broker.handlers import HANDLERS
    from artesian.protocol.codec import DecodeError

    rng = random.Random(SEED)
    corpus = build_corpus(uuid.uuid4(), rng)
    for key in (19, 37):  # safe here: nothing is executed
        e = HANDLERS[key]
        for v in range(e.min_version, e.max_version + 1):
            header = request_header(key, v, 0)
            req = sample_request(key, v, FUZZ_TOPIC)
            corpus.append(Base(key, v, len(header), header + encode_body(req), entity=req))
    decoded = 0
    for _ in range(20_000):
        data, _applied = mutate(rng, rng.choice(corpus), corpus)
        view = memoryview(bytearray(data))
        try:
            header = api.parse_request_header(view)
            entry = HANDLERS.get(header.api_key)
            if entry is None or not entry.min_version <= header.api_version <= entry.max_version:
                continue
            entry.decode(header, view)
            decoded += 1
        except DecodeError:
            pass
    assert decoded > 2000
