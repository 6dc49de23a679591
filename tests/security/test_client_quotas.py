"""Client quotas (KIP-546 admin API, producer_byte_rate and consumer_byte_rate enforced as
KIP-219 throttling) on a real broker: throttle times in responses, never timings."""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer
from kio.schema.alter_client_quotas.v1 import request as alter_q
from kio.schema.describe_client_quotas.v1 import request as describe_q
from kio.schema.metadata.v12.request import MetadataRequest

from tests.broker_process import BrokerProcess, free_port
from tests.kafka_wire import WireConn, create_topic, sample_request, session_fetch
from tests.metrics import scrape
from tests.storage.batches import make_batch


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, metrics_port: int) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(
        tmp_path_factory.mktemp("quotas") / "broker", {"artesian.metrics.port": str(metrics_port)}
    ).start()
    try:
        yield proc
    finally:
        code = proc.stop()
    assert code == 0, proc.log_tail()


def _alter(
    conn: WireConn,
    entity: dict[str, str | None],
    ops: dict[str, float | None],
    validate: bool = False,
) -> tuple[int, str | None]:
    answer = conn.request(
        49,
        1,
        alter_q.AlterClientQuotasRequest(
            entries=(
                alter_q.EntryData(
                    entity=tuple(
                        alter_q.EntityData(entity_type=t, entity_name=n) for t, n in entity.items()
                    ),
                    ops=tuple(
                        alter_q.OpData(key=k, value=v or 0.0, remove=v is None)
                        for k, v in ops.items()
                    ),
                ),
            ),
            validate_only=validate,
        ),
    )
    (entry,) = answer.entries
    return int(entry.error_code), entry.error_message


def _describe(
    conn: WireConn, components: list[tuple[str, int, str | None]], strict: bool = False
) -> Any:
    answer = conn.request(
        48,
        1,
        describe_q.DescribeClientQuotasRequest(
            components=tuple(
                describe_q.ComponentData(entity_type=t, match_type=m, match=name)
                for t, m, name in components
            ),
            strict=strict,
        ),
    )
    if answer.entries is None:
        return int(answer.error_code), answer.error_message
    return {
        tuple((e.entity_type, e.entity_name) for e in entry.entity): {
            v.key: v.value for v in entry.values
        }
        for entry in answer.entries
    }


def test_alter_and_describe_client_quotas(broker: BrokerProcess) -> None:
    with WireConn(broker.port) as conn:
        assert _alter(conn, {"user": "alice"}, {"producer_byte_rate": 1024.0}) == (0, None)
        assert _alter(conn, {"user": None, "client-id": "app"}, {"consumer_byte_rate": 2048.0}) == (
            0,
            None,
        )
        assert _alter(conn, {"client-id": None}, {"producer_byte_rate": 4096.0}) == (0, None)
        assert _alter(conn, {"user": "alice"}, {"controller_mutation_rate": 0.5}) == (0, None)
        assert _alter(conn, {"user": "bob"}, {"producer_byte_rate": 1.0}, validate=True) == (
            0,
            None,
        )
        assert _alter(conn, {"user": "x"}, {"nonsense": 1.0}) == (
            42,
            "Invalid configuration key nonsense",
        )
        assert _alter(conn, {"user": "x"}, {"request_percentage": 50.0}, validate=True) == (0, None)
        assert _alter(conn, {"user": "x"}, {"request_percentage": 0.0}) == (
            42,
            "Configuration request_percentage must be a positive percentage of one thread's time",
        )
        # The ip entity takes connection_creation_rate, alone, and nothing else does.
        assert _alter(conn, {"user": "x"}, {"connection_creation_rate": 5.0}) == (
            42,
            "Invalid configuration key connection_creation_rate",
        )
        assert _alter(conn, {"ip": None}, {"producer_byte_rate": 5.0}) == (
            42,
            "Invalid configuration key producer_byte_rate",
        )
        assert _alter(conn, {"ip": "10.1.2.3", "user": "x"}, {"connection_creation_rate": 5.0}) == (
            42,
            "Invalid quota entity combination, IP entity should not be combined with User or "
            "ClientId",
        )
        assert _alter(conn, {"ip": "not-an-address"}, {"connection_creation_rate": 5.0}) == (
            42,
            "not-an-address is not a valid IP",
        )
        assert _alter(conn, {"ip": "10.1.2.3"}, {"connection_creation_rate": 2.5}) == (
            42,
            "Configuration connection_creation_rate must be a whole number of connections per "
            "second",
        )
        assert _alter(conn, {"ip": "::1"}, {"connection_creation_rate": 0.0}, validate=True) == (
            0,
            None,
        )
        assert _alter(conn, {"user": "x"}, {"controller_mutation_rate": -1.0}) == (
            42,
            "Configuration controller_mutation_rate must be a positive number of partition "
            "mutations per second",
        )
        assert _alter(conn, {"user": "x"}, {"producer_byte_rate": 1.5})[0] == 42
        assert _alter(conn, {"group": "x"}, {"producer_byte_rate": 1.0}) == (
            42,
            "Unhandled client quota entity type: group",
        )
        assert _alter(conn, {}, {"producer_byte_rate": 1.0}) == (
            42,
            "Invalid empty client quota entity",
        )
        for bad in (float("nan"), float("inf"), -5.0, 2.0**63):
            assert _alter(conn, {"user": "x"}, {"producer_byte_rate": bad})[0] == 42, bad
        assert _alter(conn, {"user": ""}, {"producer_byte_rate": 1.0}) == (
            42,
            "Empty user not supported",
        )
        everything = _describe(conn, [])
        assert everything == {
            (("user", "alice"),): {"producer_byte_rate": 1024.0, "controller_mutation_rate": 0.5},
            (("client-id", "app"), ("user", None)): {"consumer_byte_rate": 2048.0},
            (("client-id", None),): {"producer_byte_rate": 4096.0},
        }
        assert _describe(conn, [("user", 0, "alice")]) == {
            (("user", "alice"),): {"producer_byte_rate": 1024.0, "controller_mutation_rate": 0.5}
        }
        assert list(_describe(conn, [("user", 1, None)])) == [
            (("client-id", "app"), ("user", None))
        ]
        assert _describe(conn, [("user", 2, None)], strict=True) == {
            (("user", "alice"),): {"producer_byte_rate": 1024.0, "controller_mutation_rate": 0.5}
        }
        assert _describe(conn, [("user", 0, None)])[0] == 42
        assert _describe(conn, [("ip", 2, None), ("user", 2, None)]) == (
            42,
            "Invalid entity filter component combination, IP filter component should not be "
            "used with user or clientId filter component.",
        )
        for entity in ({"user": "alice"}, {"user": None, "client-id": "app"}, {"client-id": None}):
            assert (
                _alter(
                    conn,
                    entity,
                    dict.fromkeys(
                        ["producer_byte_rate", "consumer_byte_rate", "controller_mutation_rate"]
                    ),
                )[0]
                == 0
            )
        assert _describe(conn, []) == {}


def _produce(conn: WireConn, topic: str, client_id: str, size: int) -> tuple[int, int]:
    """One Produce of ``size`` bytes of values: (error code, throttle time ms)."""
    batch = make_batch(n=size // 1000, value_size=1000)
    answer = conn.request(
        0, 9, sample_request(0, 9, topic, batch=batch, acks=1), client_id=client_id
    )
    (t,) = answer.responses
    (p,) = t.partition_responses
    return int(p.error_code), int(answer.throttle_time.total_seconds() * 1000)


def test_producers_over_their_byte_rate_are_throttled(broker: BrokerProcess) -> None:
    with WireConn(broker.port) as conn:
        create_topic(conn, "quota-produce")
        assert (
            _alter(conn, {"client-id": "slow-producer"}, {"producer_byte_rate": 100_000.0})[0] == 0
        )
        # 300 KB against 100 KB/s with one second of credit: about 2 s of debt.
        code, throttle_ms = _produce(conn, "quota-produce", "slow-producer", 300_000)
        assert code == 0
        assert 1500 <= throttle_ms <= 2500, throttle_ms
        # Another client id has no quota.
        assert _produce(conn, "quota-produce", "free-producer", 300_000) == (0, 0)
    # librdkafka reports the throttling and still delivers everything, in order.
    throttles: list[Any] = []
    delivered: list[int] = []
    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "client.id": "slow-producer",
            "throttle_cb": throttles.append,
            "linger.ms": 5,
        }
    )
    for _ in range(300):
        producer.produce(
            "quota-produce",
            b"x" * 1000,
            on_delivery=lambda err, msg: delivered.append(msg.offset()) if err is None else None,
        )
    assert producer.flush(30) == 0
    assert delivered == list(range(delivered[0], delivered[0] + 300))
    # (librdkafka also reports a 0 when a throttle ends.)
    assert any(t.throttle_time > 0 for t in throttles)
    with WireConn(broker.port) as conn:
        assert _alter(conn, {"client-id": "slow-producer"}, {"producer_byte_rate": None})[0] == 0
        assert _produce(conn, "quota-produce", "slow-producer", 10_000) == (0, 0)


def _batches(records: bytes | None) -> list[tuple[int, int]]:
    """(first offset, last offset) of each whole record batch in a Fetch answer's records
    (an answer cut at its byte limit may end with part of a batch, which clients skip)."""
    out, pos, data = [], 0, records or b""
    while pos + 27 <= len(data):
        base = int.from_bytes(data[pos : pos + 8], "big")
        length = int.from_bytes(data[pos + 8 : pos + 12], "big")
        if pos + 12 + length > len(data):
            break
        last_delta = int.from_bytes(data[pos + 23 : pos + 27], "big")
        out.append((base, base + last_delta))
        pos += 12 + length
    return out


def _fetch(
    conn: WireConn,
    topic: str,
    client_id: str,
    session_id: int,
    epoch: int,
    offsets: dict[int, int],
    max_wait_ms: int = 0,
) -> Any:
    """One Fetch v12 of ``topic`` (partition -> offset) by ``client_id``, in a session."""
    return session_fetch(
        conn,
        12,
        session_id,
        epoch,
        offsets,
        topic=topic,
        max_wait_ms=max_wait_ms,
        client_id=client_id,
    )


def _answer(resp: Any) -> tuple[int, int, list[tuple[int, int]]]:
    """(session id, throttle ms, the whole batches of every partition) of a Fetch answer."""
    got = [b for t in resp.responses for p in t.partitions for b in _batches(p.records)]
    return resp.session_id, int(resp.throttle_time.total_seconds() * 1000), got


def _record_bytes(resp: Any) -> int:
    return sum(len(p.records or b"") for t in resp.responses for p in t.partitions)


def _produce_batches(conn: WireConn, topic: str, batches: int, records: int) -> None:
    for _ in range(batches):
        batch = make_batch(n=records, value_size=1000)
        answer = conn.request(0, 9, sample_request(0, 9, topic, batch=batch, acks=1))
        assert int(answer.responses[0].partition_responses[0].error_code) == 0


def test_a_fetch_the_quota_cannot_take_now_is_answered_empty(broker: BrokerProcess) -> None:
    """KafkaApis' order: a fetch is capped at what the quota allows at once, and the fetch
    whose answer would go over is itself answered empty, with the session's id and the time
    to wait; its records come on the next fetch."""
    client = "slow-consumer"
    with WireConn(broker.port) as conn:
        create_topic(conn, "quota-fetch")
        _produce_batches(conn, "quota-fetch", 3, 90)  # three batches of about 91 KB
        assert _alter(conn, {"client-id": client}, {"consumer_byte_rate": 100_000.0})[0] == 0
        try:
            # The client asks for 1 MiB; the quota allows 100 KB at once, and the answer
            # stops there: the first batch whole, then part of the second (cut at the limit,
            # as any fetch is).
            first = _fetch(conn, "quota-fetch", client, 0, 0, {0: 0})
            sid, throttle_ms, got = _answer(first)
            assert (got, throttle_ms) == ([(0, 89)], 0)
            assert 91_000 < _record_bytes(first) <= 100_000
            assert sid != 0
            # That answer took the whole quota: this fetch's 100 KB are not sent, and the
            # answer says to wait about the second the quota takes to refill.
            empty = _fetch(conn, "quota-fetch", client, sid, 1, {0: 90})
            assert int(empty.error_code) == 0
            assert empty.responses == ()
            sid2, throttle_ms, _ = _answer(empty)
            assert sid2 == sid
            assert 0 < throttle_ms <= 1100, throttle_ms
            # The connection is muted until then; the session kept offset 90, and the records
            # come now.
            assert _answer(_fetch(conn, "quota-fetch", client, sid, 2, {})) == (sid, 0, [(90, 179)])
            # A client without a quota gets everything the request allows at once.
            _, throttle_ms, got = _answer(_fetch(conn, "quota-fetch", "free", 0, -1, {0: 0}))
            assert (got, throttle_ms) == ([(0, 89), (90, 179), (180, 269)], 0)
        finally:
            assert _alter(conn, {"client-id": client}, {"consumer_byte_rate": None})[0] == 0


def test_a_batch_larger_than_the_quota_goes_once_then_its_debt_waits(
    broker: BrokerProcess,
) -> None:
    """A first batch is sent whole, whatever the limits: one larger than the quota allows at
    once goes when the quota is at its fullest, and the debt it leaves holds the next fetch
    back (where withholding it would hold the consumer back for ever)."""
    client = "big-batch-consumer"
    with WireConn(broker.port) as conn:
        create_topic(conn, "quota-fetch-big")
        _produce(conn, "quota-fetch-big", "loader", 400_000)
        assert _alter(conn, {"client-id": client}, {"consumer_byte_rate": 100_000.0})[0] == 0
        try:
            first = _fetch(conn, "quota-fetch-big", client, 0, -1, {0: 0})
            assert _answer(first)[1:] == (0, [(0, 399)])
            # 400 KB against 100 KB at once: about 3 s of debt, and 1 s more to take the
            # next answer.
            second = _fetch(conn, "quota-fetch-big", client, 0, -1, {0: 0})
            assert second.responses == ()
            assert 3000 <= _answer(second)[1] <= 5000, _answer(second)
        finally:
            assert _alter(conn, {"client-id": client}, {"consumer_byte_rate": None})[0] == 0


def test_librdkafka_consumes_everything_in_order_under_a_quota(broker: BrokerProcess) -> None:
    from confluent_kafka import Consumer, TopicPartition

    client = "rdkafka-consumer"
    with WireConn(broker.port) as conn:
        create_topic(conn, "quota-rdkafka")
        _produce_batches(conn, "quota-rdkafka", 3, 90)
        assert _alter(conn, {"client-id": client}, {"consumer_byte_rate": 100_000.0})[0] == 0
    throttles: list[Any] = []
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "client.id": client,
            "group.id": "quota-rdkafka",
            "enable.auto.commit": False,
            "throttle_cb": throttles.append,
        }
    )
    try:
        consumer.assign([TopicPartition("quota-rdkafka", 0, 0)])
        offsets: list[int] = []
        deadline = time.monotonic() + 30
        while len(offsets) < 270 and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                offsets.append(msg.offset())
        assert offsets == list(range(270))
        assert any(t.throttle_time > 0 for t in throttles)
    finally:
        consumer.close()
        with WireConn(broker.port) as conn:
            assert _alter(conn, {"client-id": client}, {"consumer_byte_rate": None})[0] == 0


def test_quotas_cli(broker: BrokerProcess) -> None:
    import json
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "artesian.cli.main", "quotas", *args, "-b", broker.bootstrap],
            capture_output=True,
            text=True,
            timeout=60,
        )

    made = cli(
        "set", "--user", "cli-user", "--client-id", "<default>", "--producer-byte-rate", "5000"
    )
    assert made.returncode == 0, made.stderr
    assert cli("set", "--client-id", "cli-app", "--consumer-byte-rate", "7000").returncode == 0
    assert cli("set", "--client-id", "cli-app", "--controller-mutation-rate", "2.5").returncode == 0
    assert cli("set", "--client-id", "cli-app", "--request-percentage", "12.5").returncode == 0
    assert cli("set", "--ip", "10.0.0.7", "--connection-creation-rate", "20").returncode == 0
    listed = cli("list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [
        r
        for r in json.loads(listed.stdout)
        if r["user"] == "cli-user" or r["client_id"] == "cli-app" or r["ip"] == "10.0.0.7"
    ]
    app = {"user": "", "client_id": "cli-app", "ip": ""}
    assert rows == [
        {"user": "", "client_id": "", "ip": "10.0.0.7", "key": "connection_creation_rate"}
        | {"value": 20},
        app | {"key": "consumer_byte_rate", "value": 7000},
        app | {"key": "controller_mutation_rate", "value": 2.5},
        app | {"key": "request_percentage", "value": 12.5},
        {"user": "cli-user", "client_id": "<default>", "ip": "", "key": "producer_byte_rate"}
        | {"value": 5000},
    ]
    bad = cli("set", "--user", "x", "--producer-byte-rate", "0")
    assert bad.returncode == 1
    assert "INVALID_REQUEST" in bad.stderr
    assert cli("remove", "--user", "cli-user", "--client-id", "<default>").returncode == 0
    assert cli("remove", "--client-id", "cli-app").returncode == 0
    assert cli("remove", "--ip", "10.0.0.7").returncode == 0
    rows = [
        r
        for r in json.loads(cli("list", "--json").stdout)
        if "cli" in r["user"] + r["client_id"] or r["ip"]
    ]
    assert rows == []


def test_a_default_quota_gives_every_client_a_rate_of_its_own(broker: BrokerProcess) -> None:
    with WireConn(broker.port) as conn:
        create_topic(conn, "quota-default")
        assert _alter(conn, {"client-id": None}, {"producer_byte_rate": 100_000.0})[0] == 0
        try:
            # Each client id under the default owes for its own 300 KB: about 2 s each, where
            # one shared bucket would make the second owe about 5 s.
            for client in ("default-one", "default-two"):
                code, throttle_ms = _produce(conn, "quota-default", client, 300_000)
                assert code == 0
                assert 1500 <= throttle_ms <= 2500, (client, throttle_ms)
        finally:
            assert _alter(conn, {"client-id": None}, {"producer_byte_rate": None})[0] == 0


def test_a_throttled_connection_is_muted_then_served_in_order(broker: BrokerProcess) -> None:
    from tests.kafka_wire import request_frame

    with WireConn(broker.port) as conn:
        create_topic(conn, "quota-mute")
        assert _alter(conn, {"client-id": "muted"}, {"producer_byte_rate": 100_000.0})[0] == 0
        try:
            batch = make_batch(n=400, value_size=1000)  # about 3 s over
            produce = sample_request(0, 9, "quota-mute", batch=batch, acks=1)
            conn.send(request_frame(0, 9, 101, produce, client_id="muted"))
            conn.send(request_frame(0, 9, 102, produce, client_id="muted"))
            first = conn.recv_frame(timeout=10)
            assert int.from_bytes(first[:4], "big") == 101
            # The second request is not read before the throttle ends: a lower bound the
            # broker imposes, which a slow machine can only lengthen.
            with pytest.raises(TimeoutError):
                conn.recv_frame(timeout=1.0)
            second = conn.recv_frame(timeout=15)
            assert int.from_bytes(second[:4], "big") == 102
        finally:
            assert _alter(conn, {"client-id": "muted"}, {"producer_byte_rate": None})[0] == 0


def _mutate(port: int, api_key: int, version: int, topics: dict[str, int]) -> Any:
    """CreateTopics (19: name -> partitions), CreatePartitions (37: name -> new count) or
    DeleteTopics (20: the names) as client "mutator", on a connection of its own (a throttled
    one is muted for the throttle time): {name: (error code, message)}, and the response's
    throttle time in ms."""
    import datetime
    import importlib

    timeout = datetime.timedelta(seconds=10)
    if api_key == 19:
        m = importlib.import_module(f"kio.schema.create_topics.v{version}.request")
        body: Any = m.CreateTopicsRequest(
            topics=tuple(
                m.CreatableTopic(
                    name=n, num_partitions=c, replication_factor=1, assignments=(), configs=()
                )
                for n, c in topics.items()
            ),
            timeout=timeout,
            validate_only=False,
        )
    elif api_key == 37:
        m = importlib.import_module(f"kio.schema.create_partitions.v{version}.request")
        body = m.CreatePartitionsRequest(
            topics=tuple(
                m.CreatePartitionsTopic(name=n, count=c, assignments=None)
                for n, c in topics.items()
            ),
            timeout=timeout,
            validate_only=False,
        )
    else:
        m = importlib.import_module(f"kio.schema.delete_topics.v{version}.request")
        body = m.DeleteTopicsRequest(
            topics=tuple(m.DeleteTopicState(name=n, topic_id=None) for n in topics),
            timeout=timeout,
        )
    with WireConn(port) as conn:
        response = conn.request(api_key, version, body, client_id="mutator")
    results = {19: "topics", 37: "results", 20: "responses"}[api_key]
    answers = {t.name: (int(t.error_code), t.error_message) for t in getattr(response, results)}
    return answers, int(response.throttle_time.total_seconds() * 1000)


def test_topic_mutations_over_the_rate_are_refused_or_throttled(broker: BrokerProcess) -> None:
    """controller_mutation_rate (KIP-599): one partition a second, eleven at once. A
    mutation is admitted while the client's bucket is not in debt; after that new request
    versions are refused with THROTTLING_QUOTA_EXCEEDED and the time to wait, older ones
    throttled. Other clients go on."""
    exceeded = (89, "The throttling quota has been exceeded.")
    with WireConn(broker.port) as conn:
        assert _alter(conn, {"client-id": "mutator"}, {"controller_mutation_rate": 1.0}) == (
            0,
            None,
        )
        try:
            # 10 of the 11, then 5 more (admitted: not in debt yet, now 4 in debt), then none.
            answers, throttle_ms = _mutate(
                broker.port, 19, 7, {"mut-a": 10, "mut-b": 5, "mut-c": 1}
            )
            assert answers == {"mut-a": (0, None), "mut-b": (0, None), "mut-c": exceeded}
            assert 3000 < throttle_ms <= 4000
            answers, throttle_ms = _mutate(broker.port, 37, 3, {"mut-a": 12})
            assert answers == {"mut-a": exceeded} and 0 < throttle_ms <= 4000
            answers, throttle_ms = _mutate(broker.port, 20, 6, {"mut-b": 0})
            assert answers == {"mut-b": exceeded} and 0 < throttle_ms <= 4000
            # Older versions are admitted, and throttled by the debt they make.
            answers, throttle_ms = _mutate(broker.port, 19, 5, {"mut-c": 2})
            assert answers == {"mut-c": (0, None)} and 4000 < throttle_ms <= 6000
            # Another client's topics are not this one's business.
            create_topic(conn, "mut-other", 3)
            metadata = conn.request(3, 12, sample_request(3, 12, "mut-a"))
            assert {t.name: len(t.partitions) for t in metadata.topics} == {"mut-a": 10}
        finally:
            assert (
                _alter(conn, {"client-id": "mutator"}, {"controller_mutation_rate": None})[0] == 0
            )


def _throttle_ms(answer: Any) -> int:
    return int(answer.throttle_time.total_seconds() * 1000)


def test_requests_over_their_request_percentage_are_throttled(
    broker: BrokerProcess, metrics_port: int
) -> None:
    """request_percentage (KIP-124): a client whose requests take more of the broker's time
    than its share is told to wait, at most one quota window (1 s), and is muted that long.
    Every kind of response says so (schema-encoded, the cached Metadata body, a Fetch sent
    from the log); a follower's fetch is exempt; other clients go on."""
    busy = "busy-client"
    all_topics = MetadataRequest(
        topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False
    )
    throttled = "kafka_server_client_quota_throttle_time_seconds_total"
    exempt = "kafka_server_request_exempt_request_time_seconds_total"
    with WireConn(broker.port, timeout=15) as conn:
        create_topic(conn, "quota-requests")
        # 0.01 % of one thread: 100 µs a second, less than any request takes to handle.
        assert _alter(conn, {"client-id": busy}, {"request_percentage": 0.01}) == (0, None)
        try:
            before = scrape(metrics_port, throttled, kind="request")
            seen = [_throttle_ms(conn.request(3, 12, all_topics, client_id=busy)) for _ in range(3)]
            produced = conn.request(
                0, 9, sample_request(0, 9, "quota-requests", acks=1), client_id=busy
            )
            assert int(produced.responses[0].partition_responses[0].error_code) == 0
            assert int(produced.responses[0].partition_responses[0].base_offset) == 0
            seen.append(_throttle_ms(produced))
            fetched = _fetch(conn, "quota-requests", busy, 0, -1, {0: 0})
            assert _answer(fetched)[2] == [(0, 0)]
            seen.append(_answer(fetched)[1])
            versions = conn.request(18, 3, sample_request(18, 3, ""), client_id=busy)
            seen.append(_throttle_ms(versions))
            assert all(0 < ms <= 1000 for ms in seen), seen
            # Deep in debt: a throttle never lasts longer than one window.
            assert 1000 in seen, seen
            after = scrape(metrics_port, throttled, kind="request")
            assert after - before >= sum(seen) / 1000 - 0.001, (before, after, seen)
            # Another client id has no quota.
            assert _throttle_ms(conn.request(3, 12, all_topics, client_id="idle-client")) == 0
            # A follower's fetch (it names its replica id) is not held against the quota.
            exempt_before = scrape(metrics_port, exempt)
            follower = sample_request(
                1, 12, "quota-requests", replica_id=7, max_wait=datetime.timedelta(0)
            )
            for _ in range(3):
                assert _throttle_ms(conn.request(1, 12, follower, client_id=busy)) == 0
            assert scrape(metrics_port, exempt) > exempt_before
        finally:
            assert _alter(conn, {"client-id": busy}, {"request_percentage": None})[0] == 0
        assert _throttle_ms(conn.request(3, 12, all_topics, client_id=busy)) == 0
