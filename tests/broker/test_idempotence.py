"""Idempotent producers against a real broker: InitProducerId, duplicate and out-of-order
batches on the wire, state across restarts, and kafka-python / librdkafka producers whose
produce responses are lost by a proxy (so they retry batches the broker already appended)."""

from __future__ import annotations

import datetime
import socket
import struct
import threading
import time
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from artesian.protocol import api
from artesian.protocol.codec import reader_for, writer_for
from tests.storage.batches import make_batch

T = 30.0  # seconds: generous, this machine is shared
_I32 = struct.Struct(">i")
PRODUCE, LIST_OFFSETS, INIT_PRODUCER_ID = 0, 2, 22


# --- raw protocol ---------------------------------------------------------------------------


class Wire:
    """One plain socket speaking size-prefixed frames, one request at a time."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=T)
        self.corr = 0

    def close(self) -> None:
        self.sock.close()

    def _recv_exact(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            out += chunk
        return bytes(out)

    def request(self, api_key: int, version: int, body: Any) -> Any:
        self.corr += 1
        flexible = api.is_flexible(api_key, version)
        frame = bytearray(struct.pack(">hhih", api_key, version, self.corr, 4) + b"test")
        if flexible:
            frame += b"\x00"  # no header tags
        writer_for(type(body))(frame, body)
        self.sock.sendall(_I32.pack(len(frame)) + frame)
        size = _I32.unpack(self._recv_exact(4))[0]
        data = self._recv_exact(size)
        assert _I32.unpack_from(data, 0)[0] == self.corr
        pos = 5 if flexible else 4
        cls = api.response_class(api_key, version)
        assert cls is not None
        response, _ = reader_for(cls)(memoryview(data), pos)
        return response

    def init_producer_id(self, transactional_id: str | None = None, **kw: int) -> Any:
        cls = api.request_class(INIT_PRODUCER_ID, 4)
        assert cls is not None
        body = cls(
            transactional_id=transactional_id,
            transaction_timeout=datetime.timedelta(seconds=60),
            producer_id=kw.get("producer_id", -1),
            producer_epoch=kw.get("producer_epoch", -1),
        )
        return self.request(INIT_PRODUCER_ID, 4, body)

    def produce(self, topic: str, batch: bytes, partition: int = 0) -> tuple[int, int]:
        """(error code, base offset) of a Produce v9 with acks=-1."""
        cls = api.request_class(PRODUCE, 9)
        assert cls is not None
        mod = __import__(cls.__module__, fromlist=["_"])
        body = cls(
            transactional_id=None,
            acks=-1,
            timeout=datetime.timedelta(seconds=10),
            topic_data=(
                mod.TopicProduceData(
                    name=topic,
                    partition_data=(mod.PartitionProduceData(index=partition, records=batch),),
                ),
            ),
        )
        response = self.request(PRODUCE, 9, body)
        (p,) = response.responses[0].partition_responses
        return int(p.error_code), p.base_offset

    def latest_offset(self, topic: str, partition: int = 0) -> int:
        cls = api.request_class(LIST_OFFSETS, 7)
        assert cls is not None
        mod = __import__(cls.__module__, fromlist=["_"])
        body = cls(
            replica_id=-1,
            isolation_level=0,
            topics=(
                mod.ListOffsetsTopic(
                    name=topic,
                    partitions=(
                        mod.ListOffsetsPartition(
                            partition_index=partition, current_leader_epoch=-1, timestamp=-1
                        ),
                    ),
                ),
            ),
        )
        response = self.request(LIST_OFFSETS, 7, body)
        return int(response.topics[0].partitions[0].offset)


def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)], request_timeout=T
    )
    for f in futures.values():
        f.result(T)


def idem(pid: int, seq: int, n: int = 1, epoch: int = 0) -> bytes:
    now = int(time.time() * 1000)  # producer state expires by record time, as in Kafka
    return bytes(
        make_batch(n=n, producer_id=pid, producer_epoch=epoch, base_sequence=seq, timestamp=now)
    )


def test_init_producer_id(broker: Any) -> None:
    wire = Wire(broker.port)
    first = wire.init_producer_id()
    assert (int(first.error_code), first.producer_epoch) == (0, 0)
    second = wire.init_producer_id()
    assert second.producer_id == first.producer_id + 1
    # KIP-360 request from an idempotent producer: Kafka answers with a new id, epoch 0.
    bumped = wire.init_producer_id(producer_id=second.producer_id, producer_epoch=0)
    assert (int(bumped.error_code), bumped.producer_epoch) == (0, 0)
    assert bumped.producer_id == second.producer_id + 1
    # Id and epoch come together or not at all.
    assert int(wire.init_producer_id(producer_id=5).error_code) == 42  # INVALID_REQUEST
    # A transactional id gets its own producer id from the same block, epoch 0.
    txn = wire.init_producer_id(transactional_id="txn-1")
    assert (int(txn.error_code), txn.producer_id, txn.producer_epoch) == (
        0,
        bumped.producer_id + 1,
        0,
    )
    wire.close()

    # Ids are never reused: a restart claims a new block. The transactional id keeps its
    # producer id (from __transaction_state) and gets the next epoch.
    broker.restart()
    wire = Wire(broker.port)
    after = wire.init_producer_id()
    assert after.producer_id >= 1000 > txn.producer_id
    txn_after = wire.init_producer_id(transactional_id="txn-1")
    assert (txn_after.producer_id, txn_after.producer_epoch) == (txn.producer_id, 1)
    wire.close()


def test_duplicate_and_out_of_order_batches_on_the_wire(broker: Any) -> None:
    create_topic(broker.bootstrap, "idem")
    wire = Wire(broker.port)
    pid = wire.init_producer_id().producer_id
    assert wire.produce("idem", idem(pid, 0, n=3)) == (0, 0)
    assert wire.produce("idem", idem(pid, 3, n=2)) == (0, 3)
    assert wire.latest_offset("idem") == 5
    # The same batch again: NONE with the original base offset, and nothing appended.
    assert wire.produce("idem", idem(pid, 3, n=2)) == (0, 3)
    assert wire.produce("idem", idem(pid, 0, n=3)) == (0, 0)
    assert wire.latest_offset("idem") == 5
    # A gap in the sequence.
    assert wire.produce("idem", idem(pid, 7))[0] == 45  # OUT_OF_ORDER_SEQUENCE_NUMBER
    # A new epoch must start at 0; after it, the old epoch is fenced.
    assert wire.produce("idem", idem(pid, 5, epoch=1))[0] == 45
    assert wire.produce("idem", idem(pid, 0, epoch=1)) == (0, 5)
    assert wire.produce("idem", idem(pid, 5, epoch=0))[0] == 47  # INVALID_PRODUCER_EPOCH
    assert wire.latest_offset("idem") == 6
    wire.close()


@pytest.mark.parametrize("crash", [False, True], ids=["clean", "kill9"])
def test_producer_state_survives_restart(broker: Any, crash: bool) -> None:
    create_topic(broker.bootstrap, "idem")
    wire = Wire(broker.port)
    pid = wire.init_producer_id().producer_id
    for seq in range(4):
        assert wire.produce("idem", idem(pid, seq)) == (0, seq)
    wire.close()
    if crash:
        broker.kill9()
        broker.start()
    else:
        broker.restart()
    wire = Wire(broker.port)
    assert wire.produce("idem", idem(pid, 3)) == (0, 3)  # still known as a duplicate
    assert wire.produce("idem", idem(pid, 1)) == (0, 1)
    assert wire.produce("idem", idem(pid, 6))[0] == 45
    assert wire.produce("idem", idem(pid, 4)) == (0, 4)
    assert wire.latest_offset("idem") == 5
    wire.close()


# --- clients through a proxy that loses produce responses ---------------------------------


class ResponseDroppingProxy:
    """A TCP proxy on 127.0.0.1. The second Produce request and every ``every``-th after it
    is forwarded, the proxy waits for the broker's response (so the batch is appended), then
    closes both connections without forwarding it: the client must retry a batch the broker
    already has. (The second, so that a run whose client packs everything into a few large
    requests, as on a loaded machine, still loses a response.)"""

    def __init__(self, every: int = 4, max_drops: int = 12) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.upstream_port = 0
        self.every = every
        self.max_drops = max_drops
        self.enabled = True
        self.produce_requests = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._stopped = False

    def start(self, upstream_port: int) -> ResponseDroppingProxy:
        self.upstream_port = upstream_port
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped = True
        self.listener.close()
        with self._lock:
            for s in self._socks:
                _close(s)

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            doomed: set[int] = set()
            with self._lock:
                self._socks += [client, upstream]
            threading.Thread(
                target=self._requests, args=(client, upstream, doomed), daemon=True
            ).start()
            threading.Thread(
                target=self._responses, args=(upstream, client, doomed), daemon=True
            ).start()

    def _requests(self, src: socket.socket, dst: socket.socket, doomed: set[int]) -> None:
        try:
            while True:
                frame = _read_frame(src)
                api_key, _version, corr = struct.unpack_from(">hhi", frame, 4)
                if api_key == PRODUCE and self.enabled:
                    with self._lock:
                        self.produce_requests += 1
                        if (self.produce_requests - 2) % self.every == 0 and self.dropped + len(
                            doomed
                        ) < self.max_drops:
                            doomed.add(corr)
                dst.sendall(frame)
        except OSError:
            _close(src)
            _close(dst)

    def _responses(self, src: socket.socket, dst: socket.socket, doomed: set[int]) -> None:
        try:
            while True:
                frame = _read_frame(src)
                corr = _I32.unpack_from(frame, 4)[0]
                with self._lock:
                    drop = corr in doomed
                    if drop:
                        doomed.discard(corr)
                        self.dropped += 1
                if drop:
                    raise OSError("dropping the connection instead of the produce response")
                dst.sendall(frame)
        except OSError:
            _close(src)
            _close(dst)


def _read_frame(sock: socket.socket) -> bytes:
    head = _recv_exact(sock, 4)
    return head + _recv_exact(sock, _I32.unpack(head)[0])


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise OSError("closed")
        out += chunk
    return bytes(out)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@pytest.fixture
def proxied(broker_factory: Any) -> Any:
    proxy = ResponseDroppingProxy()
    broker = broker_factory({"advertised.listeners": f"PLAINTEXT://127.0.0.1:{proxy.port}"})
    proxy.start(broker.port)
    yield proxy, broker
    proxy.stop()


PARTITIONS = 3
MESSAGES = 3000


def consume_all(bootstrap: str, topic: str, expected: int) -> dict[int, list[tuple[int, int]]]:
    """(offset, message number) per partition, read with assign() from offset 0."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, 0)
    out: dict[int, list[tuple[int, int]]] = {p: [] for p in range(PARTITIONS)}
    deadline = time.monotonic() + 60
    count = 0
    while time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=500).items():
            for r in records:
                out[tp.partition].append((r.offset, int(r.value)))
                count += 1
        if count >= expected:
            # Anything past the expected count would be a duplicate: give it a moment to show.
            for tp, records in consumer.poll(timeout_ms=1000).items():
                out[tp.partition] += [(r.offset, int(r.value)) for r in records]
            break
    consumer.close()
    return out


def assert_exactly_once_in_order(got: dict[int, list[tuple[int, int]]]) -> None:
    for p in range(PARTITIONS):
        want = [i for i in range(MESSAGES) if i % PARTITIONS == p]
        offsets = [o for o, _ in got[p]]
        values = [v for _, v in got[p]]
        assert values == want, f"partition {p}: {len(values)} messages, {len(want)} expected"
        assert offsets == list(range(len(want)))


def test_kafka_python_retries_leave_no_duplicates(proxied: Any) -> None:
    proxy, broker = proxied
    create_topic(broker.bootstrap, "kp", PARTITIONS)
    bootstrap = f"127.0.0.1:{proxy.port}"
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        max_in_flight_requests_per_connection=5,
        retry_backoff_ms=20,
        reconnect_backoff_ms=20,
        request_timeout_ms=10_000,
    )
    futures = []
    for i in range(MESSAGES):
        futures.append(producer.send("kp", str(i).encode(), partition=i % PARTITIONS))
        if i % 50 == 49:
            time.sleep(0.01)  # several requests in flight, but more than one round of them
    producer.flush(60)
    for f in futures:
        f.get(T)
    producer.close(T)
    proxy.enabled = False
    assert proxy.dropped > 0, f"no response was dropped ({proxy.produce_requests} produces)"
    assert_exactly_once_in_order(consume_all(bootstrap, "kp", MESSAGES))


def test_librdkafka_retries_leave_no_duplicates(proxied: Any) -> None:
    proxy, broker = proxied
    create_topic(broker.bootstrap, "rdk", PARTITIONS)
    bootstrap = f"127.0.0.1:{proxy.port}"
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 2,
            "retry.backoff.ms": 20,
            "reconnect.backoff.ms": 20,
            "message.timeout.ms": 60_000,
        }
    )
    errors: list[Any] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    for i in range(MESSAGES):
        producer.produce("rdk", str(i).encode(), partition=i % PARTITIONS, on_delivery=on_delivery)
        producer.poll(0)
        if i % 50 == 49:
            time.sleep(0.01)
    assert producer.flush(60) == 0
    assert errors == []
    proxy.enabled = False
    assert proxy.dropped > 0, f"no response was dropped ({proxy.produce_requests} produces)"
    assert_exactly_once_in_order(consume_all(bootstrap, "rdk", MESSAGES))
