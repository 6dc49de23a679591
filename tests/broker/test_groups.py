"""Consumer groups against a real broker (classic protocol): confluent-kafka, kafka-python and
aiokafka groups that rebalance while a producer writes (members join, leave and are killed),
incremental (cooperative-sticky) rebalancing, static membership, generation and member fencing
over raw frames, session expiry, committed offsets across restarts and kill -9, and the group
admin APIs (DescribeGroups, ListGroups, DeleteGroups, OffsetFetch, OffsetDelete).

Group members that must be killed run as subprocesses of this very module
(``python -m tests.broker.test_groups member ...``); each writes one line per processed message
and per successful commit, so the test can check that every produced offset was consumed and
that nothing was delivered again below an offset some member had already committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import importlib
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

T = 20.0  # seconds: generous timeouts, this machine is shared
REPO = Path(__file__).resolve().parents[2]
FAST = {
    "group.initial.rebalance.delay.ms": "100",
    "group.min.session.timeout.ms": "1000",
    "offsets.topic.num.partitions": "4",
    # The consumer group protocol (KIP-848): the broker sets these, not the members.
    "group.consumer.min.session.timeout.ms": "1000",
    "group.consumer.session.timeout.ms": "3000",
    "group.consumer.min.heartbeat.interval.ms": "100",
    "group.consumer.heartbeat.interval.ms": "300",
}
SESSION_MS = 3000
HEARTBEAT_MS = 300
MAX_POLL_MS = 30000
PARTITIONS = 6


def wait_for(cond: Callable[[], Any], timeout: float = T, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _admin(broker: Any) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": broker.bootstrap})


def _create_topic(broker: Any, name: str, partitions: int) -> None:
    from confluent_kafka.admin import NewTopic

    admin = _admin(broker)
    futures = admin.create_topics([NewTopic(name, partitions, 1)], request_timeout=T)
    futures[name].result(T)


def _produce(broker: Any, topic: str, per_partition: dict[int, int]) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    errors: list[Any] = []
    for part, n in per_partition.items():
        for i in range(n):
            p.produce(
                topic,
                value=f"{part}:{i}".encode(),
                partition=part,
                on_delivery=lambda err, _m: err and errors.append(err),
            )
    assert p.flush(T) == 0
    assert not errors, errors


def _committed(broker: Any, group: str, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, i) for i in range(partitions)])
    admin = _admin(broker)
    futures = admin.list_consumer_group_offsets([req], request_timeout=T)
    result = futures[group].result(T)
    out = {}
    for tp in result.topic_partitions:
        assert tp.error is None, tp.error
        out[tp.partition] = tp.offset
    return out


# --- group members as subprocesses ----------------------------------------------------------


class _Out:
    """One line per event, written with a single write so a SIGKILL cuts at most the last."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def line(self, kind: str, *fields: object) -> None:
        text = " ".join([kind, *(str(f) for f in fields), f"{time.time():.6f}"]) + "\n"
        os.write(self.fd, text.encode())


class _Pending:
    """Processed but not yet committed: (partition -> next offset). Members commit about once a
    second and in their revocation callbacks, so a killed member leaves some processed messages
    uncommitted and the group redelivers them: the duplicate check has something to judge."""

    def __init__(self, out: _Out) -> None:
        self.out = out
        self.next: dict[int, int] = {}
        self.last_commit = time.monotonic()

    def processed(self, partition: int, offset: int, value: bytes) -> None:
        self.out.line("P", partition, offset, value.decode())
        self.next[partition] = offset + 1

    def due(self) -> bool:
        return bool(self.next) and time.monotonic() - self.last_commit >= 1.0

    def take(self, partitions: set[int] | None = None) -> dict[int, int]:
        """The offsets to commit now; they leave the pending set whether the commit works or
        not (a failed commit means the partition may be redelivered, which is allowed)."""
        self.last_commit = time.monotonic()
        keys = [p for p in self.next if partitions is None or p in partitions]
        return {p: self.next.pop(p) for p in keys}

    def committed(self, offsets: dict[int, int]) -> None:
        for p, o in offsets.items():
            self.out.line("C", p, o)

    def failed(self, e: BaseException) -> None:
        self.out.line("E", "commit", type(e).__name__, str(e).replace(" ", "_")[:120])


def _member_confluent(args: dict[str, str], out: _Out, stop: threading.Event) -> None:
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    conf = {
        "bootstrap.servers": args["bootstrap"],
        "group.id": args["group"],
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "max.poll.interval.ms": MAX_POLL_MS,
    }
    if args["strategy"] == "consumer":
        conf["group.protocol"] = "consumer"  # KIP-848: the broker assigns and times
    else:
        conf["session.timeout.ms"] = SESSION_MS
        conf["heartbeat.interval.ms"] = HEARTBEAT_MS
        conf["partition.assignment.strategy"] = args["strategy"]
    c = Consumer(conf)
    topic = args["topic"]
    pending = _Pending(out)

    def commit(partitions: set[int] | None = None) -> None:
        offsets = pending.take(partitions)
        if not offsets:
            return
        try:
            done = c.commit(
                offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()],
                asynchronous=False,
            )
        except KafkaException as e:
            pending.failed(e)
            return
        pending.committed({tp.partition: tp.offset for tp in done or () if tp.error is None})

    def on_assign(_c: Any, parts: list[Any]) -> None:
        out.line("A", ",".join(str(p.partition) for p in parts) or "-")

    def on_revoke(_c: Any, parts: list[Any]) -> None:
        commit({p.partition for p in parts})
        out.line("R", ",".join(str(p.partition) for p in parts) or "-")

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    while not stop.is_set():
        for m in c.consume(100, 0.3):
            if m.error():
                out.line("E", str(m.error()).replace(" ", "_"))
                continue
            pending.processed(m.partition(), m.offset(), m.value())
        if pending.due():
            commit()
    commit()
    c.close()


def _member_kafka_python(args: dict[str, str], out: _Out, stop: threading.Event) -> None:
    from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
    from kafka.errors import KafkaError

    c = KafkaConsumer(
        bootstrap_servers=args["bootstrap"],
        group_id=args["group"],
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=HEARTBEAT_MS,
        max_poll_interval_ms=MAX_POLL_MS,
    )
    topic = args["topic"]
    pending = _Pending(out)

    def commit(partitions: set[int] | None = None) -> None:
        offsets = pending.take(partitions)
        if not offsets:
            return
        try:
            c.commit(
                {TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()}
            )
        except KafkaError as e:
            pending.failed(e)
            return
        pending.committed(offsets)

    class Listener(ConsumerRebalanceListener):
        def on_partitions_assigned(self, assigned: Any) -> None:
            out.line("A", ",".join(str(tp.partition) for tp in assigned) or "-")

        def on_partitions_revoked(self, revoked: Any) -> None:
            # kafka-python 3 runs listeners on its IO thread, where the blocking commit() is
            # refused; this member commits from its poll loop (sync, after processing) and
            # forgets what it processed of revoked partitions: their next owner reads them again.
            pending.take({tp.partition for tp in revoked})
            out.line("R", ",".join(str(tp.partition) for tp in revoked) or "-")

    c.subscribe([topic], listener=Listener())
    while not stop.is_set():
        for tp, records in c.poll(timeout_ms=300, max_records=100).items():
            for r in records:
                pending.processed(tp.partition, r.offset, r.value)
        if pending.due():
            commit()
    commit()
    c.close()


def _member_aiokafka(args: dict[str, str], out: _Out, stop: threading.Event) -> None:
    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
    from aiokafka.errors import KafkaError

    topic = args["topic"]
    pending = _Pending(out)

    async def run() -> None:
        c = AIOKafkaConsumer(
            bootstrap_servers=args["bootstrap"],
            group_id=args["group"],
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=SESSION_MS,
            heartbeat_interval_ms=HEARTBEAT_MS,
            max_poll_interval_ms=MAX_POLL_MS,
        )

        async def commit(partitions: set[int] | None = None) -> None:
            offsets = pending.take(partitions)
            if not offsets:
                return
            try:
                await c.commit({TopicPartition(topic, p): o for p, o in offsets.items()})
            except KafkaError as e:
                pending.failed(e)
                return
            pending.committed(offsets)

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_assigned(self, assigned: Any) -> None:
                out.line("A", ",".join(str(tp.partition) for tp in assigned) or "-")

            async def on_partitions_revoked(self, revoked: Any) -> None:
                await commit({tp.partition for tp in revoked})
                out.line("R", ",".join(str(tp.partition) for tp in revoked) or "-")

        await c.start()
        c.subscribe([topic], listener=Listener())
        try:
            while not stop.is_set():
                batch = await c.getmany(timeout_ms=300, max_records=100)
                for tp, records in batch.items():
                    for r in records:
                        pending.processed(tp.partition, r.offset, r.value)
                if pending.due():
                    await commit()
            await commit()
        finally:
            await c.stop()

    asyncio.run(run())


MEMBERS = {
    "confluent": _member_confluent,
    "kafka-python": _member_kafka_python,
    "aiokafka": _member_aiokafka,
}


def member_main(argv: list[str]) -> None:
    args = dict(a.split("=", 1) for a in argv)
    out = _Out(args["out"])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    out.line("S", os.getpid())
    MEMBERS[args["lib"]](args, out, stop)
    out.line("X", "closed")


@dataclass
class Member:
    name: str
    proc: subprocess.Popen[bytes]
    out: Path

    def lines(self) -> list[list[str]]:
        try:
            text = self.out.read_text()
        except FileNotFoundError:
            return []
        return [ln.split() for ln in text.splitlines() if ln.endswith(tuple("0123456789"))]

    def processed(self) -> int:
        return sum(1 for ln in self.lines() if ln[0] == "P")

    def assignment(self) -> set[int] | None:
        """The partitions of the latest assign event (eager view: revoke empties it)."""
        current: set[int] | None = None
        for ln in self.lines():
            if ln[0] not in ("A", "R"):
                continue
            parts = set() if ln[1] == "-" else {int(p) for p in ln[1].split(",")}
            if ln[0] == "A":
                current = (current or set()) | parts
            elif ln[0] == "R":
                current = (current or set()) - parts
        return current

    def leave(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(T)
        assert code == 0, f"member {self.name} exited with {code}"
        assert any(ln[0] == "X" for ln in self.lines()), f"member {self.name} did not close"

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(T)


@contextlib.contextmanager
def members_of(
    broker: Any, tmp_path: Path, lib: str, topic: str, group: str, **extra: str
) -> Iterator[Callable[[str], Member]]:
    started: list[Member] = []

    def start(name: str) -> Member:
        out = tmp_path / f"member-{name}.log"
        args = {"lib": lib, "bootstrap": broker.bootstrap, "topic": topic, "group": group}
        args.update(extra, out=str(out), strategy=extra.get("strategy", "range"))
        log = open(tmp_path / f"member-{name}.stderr", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.broker.test_groups", "member"]
            + [f"{k}={v}" for k, v in args.items()],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        m = Member(name, proc, out)
        started.append(m)
        return m

    try:
        yield start
    finally:
        for m in started:
            if m.proc.poll() is None:
                m.proc.kill()
                m.proc.wait()


# --- a steady producer ----------------------------------------------------------------------


class SteadyProducer(threading.Thread):
    """Writes ``p:seq`` values round-robin over the partitions at a bounded rate until stopped
    (or ``max_seconds`` pass); remembers the offset each acknowledged value got."""

    def __init__(self, broker: Any, topic: str, rate: float = 150.0, max_seconds: float = 60.0):
        super().__init__(daemon=True)
        self.bootstrap = broker.bootstrap
        self.topic = topic
        self.rate = rate
        self.max_seconds = max_seconds
        self.stop_event = threading.Event()
        self.acked: dict[tuple[int, int], str] = {}  # (partition, offset) -> value
        self.errors: list[str] = []

    def run(self) -> None:
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, "acks": "all"})

        def on_delivery(err: Any, msg: Any) -> None:
            if err is not None:
                self.errors.append(str(err))
            else:
                self.acked[(msg.partition(), msg.offset())] = msg.value().decode()

        seq = [0] * PARTITIONS
        start = time.monotonic()
        n = 0
        while not self.stop_event.is_set() and time.monotonic() - start < self.max_seconds:
            part = n % PARTITIONS
            value = f"{part}:{seq[part]}".encode()
            p.produce(self.topic, value, partition=part, on_delivery=on_delivery)
            p.poll(0)
            seq[part] += 1
            n += 1
            ahead = n / self.rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
        if p.flush(T) != 0:
            self.errors.append("flush left messages undelivered")
        self.produced = n

    def stop(self) -> None:
        self.stop_event.set()
        self.join(T + 5)
        assert not self.is_alive()


# --- checking what the members consumed ------------------------------------------------------


def check_consumption(members: list[Member], prod: SteadyProducer, hw: dict[int, int]) -> None:
    """Every produced offset was consumed, with the value produced there; any (partition,
    offset) delivered again was at or past every offset committed for that partition before
    the redelivery (so the first member to see it had not committed it either)."""
    assert not prod.errors, prod.errors[:5]
    assert len(prod.acked) == prod.produced
    for part in range(PARTITIONS):
        acked = sorted(o for p, o in prod.acked if p == part)
        assert acked == list(range(hw[part])), f"partition {part}: acked offsets have gaps"

    deliveries: dict[tuple[int, int], list[tuple[float, str, str]]] = defaultdict(list)
    commits: dict[int, list[tuple[float, str, int]]] = defaultdict(list)
    for m in members:
        for ln in m.lines():
            if ln[0] == "P":
                deliveries[(int(ln[1]), int(ln[2]))].append((float(ln[4]), m.name, ln[3]))
            elif ln[0] == "C":
                commits[int(ln[1])].append((float(ln[3]), m.name, int(ln[2])))

    missing = sorted(set(prod.acked) - set(deliveries))
    assert not missing, f"{len(missing)} produced messages never consumed, e.g. {missing[:10]}"
    extra = sorted(set(deliveries) - set(prod.acked))
    assert not extra, f"consumed offsets that were never produced: {extra[:10]}"
    for key, seen in deliveries.items():
        assert {v for _, _, v in seen} == {prod.acked[key]}, f"{key}: wrong value {seen}"

    for (part, offset), seen in deliveries.items():
        if len(seen) < 2:
            continue
        seen.sort()
        first_member = seen[0][1]
        for t_again, again_by, _ in seen[1:]:
            covering = [(who, c) for t_c, who, c in commits[part] if c > offset and t_c < t_again]
            assert not covering, (
                f"partition {part} offset {offset}: first consumed by {first_member}, "
                f"delivered again to {again_by} although offset(s) {covering[:3]} had been "
                "committed before"
            )


def _high_watermarks(broker: Any, topic: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "hw-probe"})
    try:
        return {
            p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=T)[1]
            for p in range(PARTITIONS)
        }
    finally:
        c.close()


def _covered(members: list[Member], prod: SteadyProducer) -> bool:
    seen = {(int(ln[1]), int(ln[2])) for m in members for ln in m.lines() if ln[0] == "P"}
    return set(prod.acked) <= seen


def _describe(broker: Any, group: str) -> Any:
    admin = _admin(broker)
    (future,) = admin.describe_consumer_groups([group], request_timeout=T).values()
    return future.result(T)


# --- the scenario: join, leave, kill, join, drain ---------------------------------------------

SCENARIOS = [
    pytest.param("confluent", "range", id="confluent"),
    pytest.param("confluent", "cooperative-sticky", id="confluent-cooperative"),
    pytest.param("confluent", "consumer", id="confluent-consumer-protocol"),
    pytest.param("kafka-python", "range", id="kafka-python"),
    pytest.param("aiokafka", "range", id="aiokafka"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("lib", "strategy"), SCENARIOS)
def test_group_members_join_leave_killed_while_producing(
    module_broker_factory: Any, tmp_path: Path, lib: str, strategy: str
) -> None:
    broker = module_broker_factory(FAST)  # shared: the topic and group are this case's own
    log_start = broker.log_mark()
    topic = group = f"g-{lib}-{strategy}"
    _create_topic(broker, topic, PARTITIONS)
    prod = SteadyProducer(broker, topic, rate=150.0, max_seconds=60.0)
    extra = {"strategy": strategy} if lib == "confluent" else {}
    with members_of(broker, tmp_path, lib, topic, group, **extra) as start:
        prod.start()
        a, b, c = start("a"), start("b"), start("c")
        everyone = [a, b, c]
        wait_for(lambda: all(m.processed() for m in (a, b, c)), 60, "all three members consuming")

        a.leave()  # graceful: close() sends LeaveGroup
        before = {m.name: m.processed() for m in (b, c)}
        wait_for(
            lambda: all(m.processed() > before[m.name] + 20 for m in (b, c)),
            what="the two remaining members consuming",
        )

        b.kill()  # SIGKILL: only the session timeout removes it
        d = start("d")
        everyone.append(d)
        wait_for(lambda: d.processed() > 0, 60, "the new member consuming")
        # All six partitions are read by c and d once b's session expired.
        wait_for(
            lambda: (c.assignment() or set()) | (d.assignment() or set()) == set(range(6)),
            60,
            "b's partitions reassigned",
        )
        mark = {m.name: m.processed() for m in (c, d)}
        wait_for(
            lambda: all(m.processed() > mark[m.name] + 10 for m in (c, d)),
            what="c and d consuming after the rebalance",
        )
        if strategy == "cooperative-sticky":
            assert _describe(broker, group).partition_assignor == "cooperative-sticky"
        prod.stop()
        hw = _high_watermarks(broker, topic)
        wait_for(lambda: _covered(everyone, prod), 60, "c and d draining the topic")
        # c and d commit what they processed: the group's offsets reach the high watermarks.
        wait_for(lambda: _committed(broker, group, topic, PARTITIONS) == hw, what="commits")
        c.leave()
        d.leave()
    check_consumption(everyone, prod, hw)
    expired = (
        f"of consumer group {group} has failed: no heartbeat"
        if strategy == "consumer"
        else f"in group {group} has failed, removing it (session timeout"
    )
    assert expired in broker.log_tail(400, since=log_start)
    assert _describe(broker, group).state.name == "EMPTY"
    assert _committed(broker, group, topic, PARTITIONS) == hw


# --- raw frames: generations, fencing, static members, session expiry -----------------------

NONE, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS = 0, 22, 25, 27
MEMBER_ID_REQUIRED, FENCED_INSTANCE_ID = 79, 82


def _subscription(*topics: str) -> bytes:
    """ConsumerProtocolSubscription v0."""
    out = bytearray(struct.pack(">hi", 0, len(topics)))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    return bytes(out + struct.pack(">i", -1))


def _assignment(topic: str, partitions: list[int]) -> bytes:
    """ConsumerProtocolAssignment v0."""
    out = bytearray(struct.pack(">hi", 0, 1))
    out += struct.pack(">h", len(topic)) + topic.encode()
    out += struct.pack(f">i{len(partitions)}i", len(partitions), *partitions)
    return bytes(out + struct.pack(">i", -1))


class RawMember:
    """A group member speaking JoinGroup v5, SyncGroup v3, Heartbeat v3, OffsetCommit v7 and
    LeaveGroup v3 over its own connection; a request may be sent now and answered later."""

    def __init__(
        self,
        broker: Any,
        group: str,
        instance: str | None = None,
        session_ms: int = 6000,
        rebalance_ms: int = 10_000,
        join_version: int = 5,
    ) -> None:
        from tests.kafka_wire import WireConn

        self.conn = WireConn(broker.port, timeout=T)
        self.group = group
        self.instance = instance
        self.session_ms = session_ms
        self.rebalance_ms = rebalance_ms
        self.member_id = ""
        self.generation = -1
        self.leader = ""
        self.members: list[str] = []
        self.skip_assignment = False
        self.join_version = join_version
        self._pending: tuple[int, int, int] | None = None

    def close(self) -> None:
        self.conn.close()

    def _send(self, key: int, version: int, body: Any) -> None:
        from tests.kafka_wire import request_frame

        assert self._pending is None
        corr = self.conn.next_corr()
        self.conn.send(request_frame(key, version, corr, body))
        self._pending = (key, version, corr)

    def _recv(self) -> Any:
        from tests.kafka_wire import parse_response

        assert self._pending is not None
        key, version, corr = self._pending
        self._pending = None
        got, response = parse_response(key, version, self.conn.recv_frame())
        assert got == corr
        return response

    def send_join(
        self, topic: str = "t", member_id: str | None = None, metadata: bytes | None = None
    ) -> None:
        jg = importlib.import_module(f"kio.schema.join_group.v{self.join_version}.request")
        self._send(
            11,
            self.join_version,
            jg.JoinGroupRequest(
                group_id=self.group,
                session_timeout=datetime.timedelta(milliseconds=self.session_ms),
                rebalance_timeout=datetime.timedelta(milliseconds=self.rebalance_ms),
                member_id=self.member_id if member_id is None else member_id,
                group_instance_id=self.instance,
                protocol_type="consumer",
                protocols=(
                    jg.JoinGroupRequestProtocol(
                        name="range",
                        metadata=_subscription(topic) if metadata is None else metadata,
                    ),
                ),
            ),
        )

    def recv_join(self) -> int:
        r = self._recv()
        code = int(r.error_code)
        if code in (NONE, MEMBER_ID_REQUIRED):
            self.member_id = r.member_id
        if code == NONE:
            self.generation = int(r.generation_id)
            self.leader = r.leader
            self.members = [m.member_id for m in r.members]
            self.skip_assignment = getattr(r, "skip_assignment", False)
        return code

    def join(self, topic: str = "t", metadata: bytes | None = None) -> int:
        """Join, answering MEMBER_ID_REQUIRED (KIP-394) with the id handed out."""
        self.send_join(topic, metadata=metadata)
        code = self.recv_join()
        if code == MEMBER_ID_REQUIRED:
            self.send_join(topic, metadata=metadata)
            code = self.recv_join()
        return code

    def send_sync(self, assignments: dict[str, bytes] | None = None) -> None:
        from kio.schema.sync_group.v3 import request as sg

        self._send(
            14,
            3,
            sg.SyncGroupRequest(
                group_id=self.group,
                generation_id=self.generation,
                member_id=self.member_id,
                group_instance_id=self.instance,
                assignments=tuple(
                    sg.SyncGroupRequestAssignment(member_id=m, assignment=a)
                    for m, a in (assignments or {}).items()
                ),
            ),
        )

    def recv_sync(self) -> tuple[int, bytes]:
        r = self._recv()
        return int(r.error_code), bytes(r.assignment)

    def sync(self, assignments: dict[str, bytes] | None = None) -> tuple[int, bytes]:
        self.send_sync(assignments)
        return self.recv_sync()

    def heartbeat(self, generation: int | None = None, member_id: str | None = None) -> int:
        from kio.schema.heartbeat.v3 import request as hb

        self._send(
            12,
            3,
            hb.HeartbeatRequest(
                group_id=self.group,
                generation_id=self.generation if generation is None else generation,
                member_id=self.member_id if member_id is None else member_id,
                group_instance_id=self.instance,
            ),
        )
        return int(self._recv().error_code)

    def commit(
        self,
        offsets: dict[int, int],
        topic: str = "t",
        generation: int | None = None,
        member_id: str | None = None,
    ) -> set[int]:
        """The distinct per-partition error codes of an OffsetCommit v7."""
        from kio.schema.offset_commit.v7 import request as oc

        self._send(
            8,
            7,
            oc.OffsetCommitRequest(
                group_id=self.group,
                generation_id_or_member_epoch=self.generation if generation is None else generation,
                member_id=self.member_id if member_id is None else member_id,
                group_instance_id=self.instance,
                topics=(
                    oc.OffsetCommitRequestTopic(
                        name=topic,
                        partitions=tuple(
                            oc.OffsetCommitRequestPartition(
                                partition_index=p,
                                committed_offset=o,
                                committed_leader_epoch=-1,
                                committed_metadata="",
                            )
                            for p, o in offsets.items()
                        ),
                    ),
                ),
            ),
        )
        r = self._recv()
        return {int(p.error_code) for t in r.topics for p in t.partitions}

    def leave(self) -> int:
        from kio.schema.leave_group.v3 import request as lg

        self._send(
            13,
            3,
            lg.LeaveGroupRequest(
                group_id=self.group,
                members=(
                    lg.MemberIdentity(member_id=self.member_id, group_instance_id=self.instance),
                ),
            ),
        )
        r = self._recv()
        return int(r.error_code) or max(int(m.error_code) for m in r.members)


def _raw_setup(broker: Any, partitions: int = 2) -> None:
    """Topic "t" of the raw-frame tests, which share a broker (each with a group of its own)."""
    from confluent_kafka import KafkaError, KafkaException

    try:
        _create_topic(broker, "t", partitions)
    except KafkaException as e:
        if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
    admin = _admin(broker)
    assert len(admin.list_topics("t", timeout=T).topics["t"].partitions) == partitions


def _form_group(*members: RawMember) -> dict[str, bytes]:
    """All members join together (one generation), the leader assigns partition i to member i,
    everyone syncs. Returns member id -> assignment."""
    for m in members:
        m.send_join()
    for m in members:
        if m.recv_join() == MEMBER_ID_REQUIRED:
            m.send_join()
    codes = [m.recv_join() if m._pending else NONE for m in members]
    assert codes == [NONE] * len(members)
    assert len({m.generation for m in members}) == 1
    leader = next(m for m in members if m.member_id == m.leader)
    assert sorted(leader.members) == sorted(m.member_id for m in members)
    plan = {mid: _assignment("t", [i]) for i, mid in enumerate(sorted(leader.members))}
    for m in members:
        if m is not leader:
            m.send_sync()
    assert leader.sync(plan) == (NONE, plan[leader.member_id])
    for m in members:
        if m is not leader:
            assert m.recv_sync() == (NONE, plan[m.member_id])
    return plan


def test_offset_commit_generation_and_member_fencing(module_broker_factory: Any) -> None:
    broker = module_broker_factory(FAST)
    _raw_setup(broker)
    a, b = RawMember(broker, "fence"), RawMember(broker, "fence")
    try:
        assert a.join() == NONE
        gen1 = a.generation
        assert a.leader == a.member_id and a.members == [a.member_id]
        assert a.sync({a.member_id: _assignment("t", [0, 1])})[0] == NONE
        assert a.commit({0: 5, 1: 6}) == {NONE}
        # A stale or future generation, and a member the group does not know.
        assert a.commit({0: 7}, generation=gen1 - 1) == {ILLEGAL_GENERATION}
        assert a.commit({0: 7}, generation=gen1 + 1) == {ILLEGAL_GENERATION}
        assert a.commit({0: 7}, member_id="nobody") == {UNKNOWN_MEMBER_ID}
        assert a.heartbeat(generation=gen1 - 1) == ILLEGAL_GENERATION
        assert a.heartbeat(member_id="nobody") == UNKNOWN_MEMBER_ID
        assert a.heartbeat() == NONE

        # b joins: a rebalance starts. a learns it from its heartbeat; its commits with the
        # current generation are still accepted (consumers commit before rejoining).
        b.send_join()
        assert b.recv_join() == MEMBER_ID_REQUIRED
        b.send_join()  # parked until a rejoins
        wait_for(lambda: a.heartbeat() == REBALANCE_IN_PROGRESS, what="rebalance")
        assert a.commit({0: 8}) == {NONE}
        assert a.commit({0: 9}, generation=gen1 - 1) == {ILLEGAL_GENERATION}
        assert a.join() == NONE
        assert b.recv_join() == NONE
        gen2 = a.generation
        assert gen2 == b.generation == gen1 + 1
        assert a.leader == b.leader == a.member_id
        assert sorted(a.members) == sorted([a.member_id, b.member_id])
        # Until the leader's SyncGroup, the new generation is not usable for commits, and the
        # old one is fenced.
        assert b.commit({1: 3}) == {REBALANCE_IN_PROGRESS}
        assert b.commit({1: 3}, generation=gen1) == {ILLEGAL_GENERATION}
        # Kafka describes the protocol and assignments of a stable group only.
        desc = _describe(broker, "fence")
        assert desc.state.name == "COMPLETING_REBALANCING"  # confluent-kafka's name
        assert desc.partition_assignor == ""
        assert all(not m.assignment.topic_partitions for m in desc.members)
        b.send_sync()
        plan = {a.member_id: _assignment("t", [0]), b.member_id: _assignment("t", [1])}
        assert a.sync(plan) == (NONE, plan[a.member_id])
        assert b.recv_sync() == (NONE, plan[b.member_id])
        assert a.commit({0: 10}, generation=gen1) == {ILLEGAL_GENERATION}
        assert b.commit({1: 11}) == {NONE}
        assert a.commit({0: 10}) == {NONE}
        # A member that left is unknown; its commits are refused.
        assert b.leave() == NONE
        assert b.commit({1: 12}) == {UNKNOWN_MEMBER_ID}
        assert b.heartbeat() == UNKNOWN_MEMBER_ID
        # Generation -1 (no group management) is refused while the group has members...
        assert a.commit({0: 12}, generation=-1, member_id="") == {UNKNOWN_MEMBER_ID}
        assert a.leave() == NONE
        wait_for(lambda: _describe(broker, "fence").state.name == "EMPTY", what="empty group")
        # ...and accepted once it is empty, whatever member id it names (Kafka's
        # validateOffsetCommit returns before looking at the member).
        assert a.commit({0: 13}, generation=-1, member_id="stale") == {NONE}
    finally:
        a.close()
        b.close()
    assert _committed(broker, "fence", "t", 2) == {0: 13, 1: 11}


def test_static_member_rejoins_without_rebalance_and_fences_old_instance(
    module_broker_factory: Any,
) -> None:
    broker = module_broker_factory(FAST)
    _raw_setup(broker)
    s1, s2 = RawMember(broker, "static", "i-1"), RawMember(broker, "static", "i-2")
    s1b = RawMember(broker, "static", "i-1")
    try:
        plan = _form_group(s1, s2)
        generation, leader = s1.generation, s1.leader
        old_s1 = s1.member_id

        # i-1 restarts (no LeaveGroup: static members keep their place for the session
        # timeout) and joins with no member id: same generation, its old assignment, no
        # rebalance; it is not told to lead (so it does not run a pointless assignment).
        assert s1b.join() == NONE
        assert s1b.member_id != old_s1
        assert s1b.generation == generation
        assert s1b.leader == leader and s1b.members == []
        assert s1b.sync() == (NONE, plan[old_s1])
        assert s2.heartbeat() == NONE  # not REBALANCE_IN_PROGRESS: nothing moved
        assert s1b.heartbeat() == NONE
        assert s1b.commit({0: 4}) == {NONE}

        # The old incarnation of i-1 is fenced everywhere.
        assert s1.heartbeat() == FENCED_INSTANCE_ID
        assert s1.commit({0: 5}) == {FENCED_INSTANCE_ID}
        assert s1.sync()[0] == FENCED_INSTANCE_ID
        s1.send_join()
        assert s1.recv_join() == FENCED_INSTANCE_ID
        assert s1.leave() == FENCED_INSTANCE_ID
        assert s2.heartbeat() == NONE
        assert s1b.heartbeat() == NONE
    finally:
        for m in (s1, s2, s1b):
            m.close()
    assert _committed(broker, "static", "t", 2) == {0: 4, 1: -1001}


def test_a_restarted_static_leader_skips_the_assignment_from_join_group_v9(
    module_broker_factory: Any,
) -> None:
    """KIP-814: from v9 the new incarnation of a static leader is told it leads, with the
    members, and to skip the assignment; its SyncGroup gets its old partitions back."""
    broker = module_broker_factory(FAST)
    _raw_setup(broker)
    s1, s2 = RawMember(broker, "skip", "i-1"), RawMember(broker, "skip", "i-2")
    restarted: list[RawMember] = []
    try:
        plan = _form_group(s1, s2)
        lead, follow = (s1, s2) if s1.member_id == s1.leader else (s2, s1)
        generation = lead.generation
        lead_b = RawMember(broker, "skip", lead.instance, join_version=9)
        follow_b = RawMember(broker, "skip", follow.instance, join_version=9)
        restarted += [lead_b, follow_b]

        assert lead_b.join() == NONE
        assert (lead_b.generation, lead_b.leader, lead_b.skip_assignment) == (
            generation,
            lead_b.member_id,
            True,
        )
        assert sorted(lead_b.members) == sorted([lead_b.member_id, follow.member_id])
        assert lead_b.sync({}) == (NONE, plan[lead.member_id])
        assert follow.heartbeat() == NONE

        # A follower restarting at v9 is not told to lead or to skip anything.
        assert follow_b.join() == NONE
        assert (follow_b.leader, follow_b.members, follow_b.skip_assignment) == (
            lead_b.member_id,
            [],
            False,
        )
        assert follow_b.sync() == (NONE, plan[follow.member_id])
        assert lead_b.heartbeat() == NONE
    finally:
        for m in (s1, s2, *restarted):
            m.close()


def test_session_expiry_rebalances_to_the_remaining_member_raw(
    module_broker_factory: Any,
) -> None:
    broker = module_broker_factory(FAST)
    _raw_setup(broker)
    a = RawMember(broker, "expiry", session_ms=1000)
    b = RawMember(broker, "expiry", session_ms=1000)
    try:
        _form_group(a, b)
        generation = a.generation
        # b goes silent; a keeps heartbeating until the coordinator tells it to rejoin.
        wait_for(lambda: a.heartbeat() == REBALANCE_IN_PROGRESS, what="b's session to expire")
        assert a.join() == NONE
        assert a.generation == generation + 1
        assert a.leader == a.member_id and a.members == [a.member_id]
        assert b.heartbeat() == UNKNOWN_MEMBER_ID
    finally:
        a.close()
        b.close()


def test_a_member_gone_while_waiting_in_sync_group_expires_in_the_next_rebalance(
    module_broker_factory: Any,
) -> None:
    """A follower whose connection closes while its SyncGroup waits for the leader is not
    waiting any more once a rebalance starts: its session runs out and the rebalance ends
    then, not after the rebalance timeout (here longer than the clients wait)."""
    broker = module_broker_factory(FAST)
    log_start = broker.log_mark()
    _raw_setup(broker)
    long = 120_000  # ms: a rebalance held for it would outlast every request below
    a = RawMember(broker, "gone-in-sync", rebalance_ms=long)
    b = RawMember(broker, "gone-in-sync", session_ms=1000, rebalance_ms=long)
    c = RawMember(broker, "gone-in-sync", rebalance_ms=long)
    try:
        assert a.join() == NONE  # a leads from the first generation on
        assert a.sync({a.member_id: b""})[0] == NONE
        b.send_join()
        assert b.recv_join() == MEMBER_ID_REQUIRED
        b.send_join()
        a.send_join()
        assert (a.recv_join(), b.recv_join()) == (NONE, NONE)
        assert a.leader == a.member_id and a.generation == b.generation
        b.send_sync()
        time.sleep(0.5)  # the SyncGroup reaches the coordinator and waits for the leader
        b.close()
        time.sleep(0.2)
        # A new member starts a rebalance; a rejoins; b's session must run out.
        c.send_join()
        assert c.recv_join() == MEMBER_ID_REQUIRED
        c.send_join()
        a.send_join()
        assert (c.recv_join(), a.recv_join()) == (NONE, NONE)
        assert sorted(a.members) == sorted([a.member_id, c.member_id])
    finally:
        for m in (a, b, c):
            m.close()
    assert (
        f"member {b.member_id} in group gone-in-sync has failed, removing it (session timeout "
        "1000 ms expired)"
    ) in broker.log_tail(since=log_start)


def test_member_that_never_syncs_is_removed_after_the_rebalance_timeout(
    module_broker_factory: Any,
) -> None:
    """A follower that heartbeats but never sends SyncGroup must not hold the group."""
    broker = module_broker_factory(FAST)
    log_start = broker.log_mark()
    _raw_setup(broker)
    a = RawMember(broker, "nosync", rebalance_ms=1500)
    b = RawMember(broker, "nosync", rebalance_ms=1500)
    try:
        for m in (a, b):
            m.send_join()
        for m in (a, b):
            if m.recv_join() == MEMBER_ID_REQUIRED:
                m.send_join()
        assert [m.recv_join() if m._pending else NONE for m in (a, b)] == [NONE, NONE]
        leader, follower = (a, b) if a.member_id == a.leader else (b, a)
        plan = {mid: _assignment("t", [i]) for i, mid in enumerate(sorted(leader.members))}
        assert leader.sync(plan) == (NONE, plan[leader.member_id])
        assert follower.heartbeat() == NONE  # alive, but it never syncs
        wait_for(
            lambda: follower.heartbeat() == UNKNOWN_MEMBER_ID,
            what="the follower to be removed for not syncing",
        )
        assert leader.heartbeat() == REBALANCE_IN_PROGRESS
        assert leader.join() == NONE
        assert leader.members == [leader.member_id]
    finally:
        a.close()
        b.close()
    assert "in group nosync did not send SyncGroup within the rebalance timeout" in (
        broker.log_tail(since=log_start)
    )


# --- real clients: static membership, session expiry ------------------------------------------


class Tracked:
    """A confluent-kafka consumer that records its rebalance callbacks; polled by the test."""

    def __init__(self, broker: Any, group: str, topic: str, **conf: Any) -> None:
        from confluent_kafka import Consumer

        self.events: list[tuple[str, list[int]]] = []
        self.errors: list[Any] = []
        self.c = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": SESSION_MS,
                "heartbeat.interval.ms": HEARTBEAT_MS,
                **conf,
            }
        )
        self.c.subscribe(
            [topic],
            on_assign=lambda _c, ps: self.events.append(("A", sorted(p.partition for p in ps))),
            on_revoke=lambda _c, ps: self.events.append(("R", sorted(p.partition for p in ps))),
        )

    def poll(self, seconds: float = 0.1) -> list[Any]:
        out = []
        for m in self.c.consume(100, seconds):
            if m.error():
                self.errors.append(m.error())
            else:
                out.append(m)
        return out

    def assignment(self) -> list[int]:
        return sorted(tp.partition for tp in self.c.assignment())


def poll_until(consumers: list[Tracked], cond: Callable[[], Any], what: str, timeout: float = T):
    def step() -> Any:
        for c in consumers:
            c.poll(0.05)
        return cond()

    return wait_for(step, timeout, what)


def test_static_member_restart_keeps_assignment_and_duplicate_is_fenced(
    module_broker_factory: Any,
) -> None:
    from confluent_kafka import KafkaError

    broker = module_broker_factory(FAST)
    _create_topic(broker, "static-c", 4)
    conf = {"session.timeout.ms": 10_000}
    s1 = Tracked(broker, "static-c", "static-c", **{"group.instance.id": "s-1"}, **conf)
    s2 = Tracked(broker, "static-c", "static-c", **{"group.instance.id": "s-2"}, **conf)
    poll_until(
        [s1, s2],
        lambda: len(s1.assignment()) == 2 and len(s2.assignment()) == 2,
        "two static members with two partitions each",
    )
    first = s1.assignment()
    s2_events = list(s2.events)
    s1.c.close()  # a static member's close() sends no LeaveGroup: its place is kept

    s1b = Tracked(broker, "static-c", "static-c", **{"group.instance.id": "s-1"}, **conf)
    poll_until([s1b, s2], lambda: s1b.assignment(), "the restarted member's assignment")
    assert s1b.assignment() == first
    assert s1b.events == [("A", first)]
    for _ in range(10):  # a second of heartbeats: no rebalance reaches s2
        s2.poll(0.1)
    assert s2.events == s2_events
    desc = _describe(broker, "static-c")
    assert desc.state.name == "STABLE"
    assert sorted(m.group_instance_id for m in desc.members) == ["s-1", "s-2"]

    # A second consumer with s-2's instance id takes its place; the old one is fenced (fatal).
    s2b = Tracked(broker, "static-c", "static-c", **{"group.instance.id": "s-2"}, **conf)
    poll_until([s2b, s1b], lambda: s2b.assignment(), "the duplicate's assignment")
    assert s2b.assignment() == s2_events[-1][1]

    def fenced() -> list[Any]:
        s2.poll(0.1)
        return [e for e in s2.errors if e.code() == KafkaError._FATAL]

    (fatal,) = wait_for(fenced, what="the old s-2 to be fenced")
    assert "fenced" in fatal.str()  # librdkafka's text for FENCED_INSTANCE_ID
    assert s1b.events == [("A", first)]
    for c in (s1b, s2b):
        c.c.close()
    with contextlib.suppress(Exception):
        s2.c.close()


def test_session_expiry_gives_a_killed_members_partitions_to_the_rest(
    module_broker_factory: Any, tmp_path: Path
) -> None:
    broker = module_broker_factory(FAST)
    log_start = broker.log_mark()
    _create_topic(broker, "expiry-c", PARTITIONS)
    _produce(broker, "expiry-c", dict.fromkeys(range(PARTITIONS), 5))
    with members_of(broker, tmp_path, "confluent", "expiry-c", "expiry-c") as start:
        member = start("victim")
        c = Tracked(broker, "expiry-c", "expiry-c")
        poll_until(
            [c],
            lambda: len(c.assignment()) == 3 and len(member.assignment() or ()) == 3,
            "the partitions split between the two members",
            timeout=40,
        )
        member.kill()
        poll_until([c], lambda: c.assignment() == list(range(PARTITIONS)), "all six partitions")
        c.c.close()
    assert "in group expiry-c has failed, removing it (session timeout" in broker.log_tail(
        200, since=log_start
    )


# --- committed offsets across restarts ----------------------------------------------------------


def _resume_points(broker: Any, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The first offset a new group member reads from each partition."""
    c = Tracked(broker, group, topic)
    first: dict[int, int] = {}

    def step() -> bool:
        for m in c.poll(0.1):
            first.setdefault(m.partition(), m.offset())
        return len(first) == partitions

    wait_for(step, what="a message from every partition")
    c.c.close()
    return first


def _commit_as_member(broker: Any, group: str, topic: str, offsets: dict[int, int]) -> None:
    from confluent_kafka import TopicPartition

    c = Tracked(broker, group, topic)
    poll_until([c], lambda: len(c.assignment()) == len(offsets), "the assignment")
    done = c.c.commit(
        offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False
    )
    assert all(tp.error is None for tp in done)
    c.c.close()


@pytest.mark.slow
def test_committed_offsets_survive_restart_and_kill9(broker_factory: Any) -> None:
    broker = broker_factory(FAST)
    _create_topic(broker, "t", 3)
    _produce(broker, "t", {0: 10, 1: 10, 2: 10})
    _commit_as_member(broker, "durable", "t", {0: 3, 1: 7, 2: 9})
    assert _committed(broker, "durable", "t", 3) == {0: 3, 1: 7, 2: 9}

    broker.restart()
    assert _committed(broker, "durable", "t", 3) == {0: 3, 1: 7, 2: 9}
    assert _resume_points(broker, "durable", "t", 3) == {0: 3, 1: 7, 2: 9}

    _commit_as_member(broker, "durable", "t", {0: 5, 1: 8, 2: 10})
    _produce(broker, "t", {2: 1})  # so partition 2 has a message at its committed offset
    broker.kill9()
    broker.start()
    assert _committed(broker, "durable", "t", 3) == {0: 5, 1: 8, 2: 10}
    assert _resume_points(broker, "durable", "t", 3) == {0: 5, 1: 8, 2: 10}
    # The group went on across both restarts: it is there, empty, with its offsets.
    desc = _describe(broker, "durable")
    assert desc.state.name == "EMPTY" and not desc.members


@pytest.mark.slow
def test_a_broker_restart_keeps_a_stable_group_without_a_rebalance(broker_factory: Any) -> None:
    """The coordinator reloads the last generation with its members and assignments, as
    Kafka does, so consumers that keep heartbeating through a restart carry on."""
    broker = broker_factory(FAST)
    _create_topic(broker, "t", 2)
    _produce(broker, "t", {0: 2, 1: 2})
    conf = {"session.timeout.ms": 10_000}
    a = Tracked(broker, "survivor", "t", **conf)
    b = Tracked(broker, "survivor", "t", **conf)
    seen: dict[int, list[int]] = {0: [], 1: []}

    def read_until(offsets: list[int]) -> None:
        def step() -> bool:
            for c in (a, b):
                for m in c.poll(0.05):
                    seen[m.partition()].append(m.offset())
            return seen == {0: offsets, 1: offsets}

        wait_for(step, what=f"offsets {offsets} of both partitions")

    read_until([0, 1])
    assert len(a.assignment()) == 1 and len(b.assignment()) == 1
    events = (list(a.events), list(b.events))

    broker.restart()
    _produce(broker, "t", {0: 1, 1: 1})
    read_until([0, 1, 2])
    for _ in range(20):  # two seconds of heartbeats against the restarted broker
        a.poll(0.05)
        b.poll(0.05)
    assert (a.events, b.events) == events
    desc = _describe(broker, "survivor")
    assert desc.state.name == "STABLE" and len(desc.members) == 2


# --- group admin APIs -----------------------------------------------------------------------------


def test_describe_list_delete_groups_and_offset_delete(broker_factory: Any) -> None:
    from confluent_kafka import KafkaError, TopicPartition
    from kafka import KafkaAdminClient
    from kafka import TopicPartition as KTP
    from kafka.errors import (
        GroupIdNotFoundError,
        GroupSubscribedToTopicError,
        NoError,
        UnknownTopicOrPartitionError,
    )

    broker = broker_factory(FAST)
    _create_topic(broker, "t", 2)
    _create_topic(broker, "other", 1)
    _produce(broker, "t", {0: 3, 1: 3})
    admin = _admin(broker)

    c = Tracked(broker, "adm", "t", **{"client.id": "adm-client"})
    poll_until([c], lambda: len(c.assignment()) == 2, "the assignment")
    c.c.commit(offsets=[TopicPartition("t", 0, 2), TopicPartition("t", 1, 1)], asynchronous=False)
    # A commit for a topic the group does not subscribe to (allowed, as in Kafka).
    c.c.commit(offsets=[TopicPartition("other", 0, 1)], asynchronous=False)

    futures = admin.describe_consumer_groups(["adm", "ghost"], request_timeout=T)
    desc = futures["adm"].result(T)
    assert desc.state.name == "STABLE"
    assert desc.partition_assignor == "range"
    (m,) = desc.members
    assert m.client_id == "adm-client"
    assert m.host == "/127.0.0.1"  # Java's InetAddress.toString(), as Kafka's coordinator
    assert sorted(tp.partition for tp in m.assignment.topic_partitions) == [0, 1]
    ghost = futures["ghost"]
    if ghost.exception(T) is None:
        assert ghost.result().state.name == "DEAD"  # DescribeGroups below v6
    else:
        assert ghost.exception().args[0].code() == KafkaError.GROUP_ID_NOT_FOUND

    listed = admin.list_consumer_groups(request_timeout=T).result(T)
    assert {g.group_id: g.state.name for g in listed.valid} == {"adm": "STABLE"}

    dg = admin.delete_consumer_groups(["adm", "ghost"], request_timeout=T)
    assert dg["adm"].exception(T).args[0].code() == KafkaError.NON_EMPTY_GROUP
    assert dg["ghost"].exception(T).args[0].code() == KafkaError.GROUP_ID_NOT_FOUND

    # OffsetDelete: refused for the subscribed topic while the group is active, allowed for
    # the other one; unknown groups are GROUP_ID_NOT_FOUND.
    kadmin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        res = kadmin.delete_group_offsets("adm", [KTP("t", 0), KTP("other", 0)])
        assert res == {KTP("t", 0): GroupSubscribedToTopicError, KTP("other", 0): NoError}
        # A topic or partition the metadata does not have, as Kafka answers it.
        res = kadmin.delete_group_offsets("adm", [KTP("t", 0), KTP("nosuch", 0), KTP("t", 9)])
        assert res == {
            KTP("t", 0): GroupSubscribedToTopicError,
            KTP("nosuch", 0): UnknownTopicOrPartitionError,
            KTP("t", 9): UnknownTopicOrPartitionError,
        }
        with pytest.raises(GroupIdNotFoundError):
            kadmin.delete_group_offsets("ghost", [KTP("t", 0)])
        assert _committed(broker, "adm", "t", 2) == {0: 2, 1: 1}
        assert _committed(broker, "adm", "other", 1) == {0: -1001}

        c.c.close()  # LeaveGroup: the group is empty now
        assert _describe(broker, "adm").state.name == "EMPTY"
        res = kadmin.delete_group_offsets("adm", [KTP("t", 1)])
        assert res == {KTP("t", 1): NoError}
        assert _committed(broker, "adm", "t", 2) == {0: 2, 1: -1001}
    finally:
        kadmin.close()

    listed = admin.list_consumer_groups(request_timeout=T).result(T)
    assert {g.group_id: g.state.name for g in listed.valid} == {"adm": "EMPTY"}
    dg = admin.delete_consumer_groups(["adm"], request_timeout=T)
    assert dg["adm"].result(T) is None
    assert admin.list_consumer_groups(request_timeout=T).result(T).valid == []
    assert _committed(broker, "adm", "t", 2) == {0: -1001, 1: -1001}
    # Gone for good: a restart replays the tombstones.
    broker.restart()
    assert admin.list_consumer_groups(request_timeout=T).result(T).valid == []
    assert _committed(broker, "adm", "t", 2) == {0: -1001, 1: -1001}


if __name__ == "__main__" and sys.argv[1:2] == ["member"]:
    member_main(sys.argv[2:])


def test_a_deleted_topics_offsets_go_with_it(broker_factory: Any) -> None:
    """Kafka's onPartitionsDeleted: a topic created again under a deleted one's name starts
    from auto.offset.reset, not from the old topic's committed offsets (nor from one a
    transaction held pending); a restart replays the tombstones, and does not take the
    offsets of the new topic for the old one's."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    broker = broker_factory(FAST)
    _create_topic(broker, "reborn", 2)
    committer = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": "rb", "enable.auto.commit": False}
    )
    committer.commit(
        offsets=[TopicPartition("reborn", 0, 3), TopicPartition("reborn", 1, 4)],
        asynchronous=False,
    )
    # And one pending in an open transaction, whose commit must not bring it back.
    txn = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "rb-txn"})
    txn.init_transactions(T)
    txn.begin_transaction()
    txn.send_offsets_to_transaction(
        [TopicPartition("reborn", 1, 9)], committer.consumer_group_metadata(), T
    )
    committer.close()
    assert _committed(broker, "rb", "reborn", 2) == {0: 3, 1: 4}

    admin = _admin(broker)  # held until the answer: a dropped client cancels its requests
    (deleted,) = admin.delete_topics(["reborn"], request_timeout=T).values()
    deleted.result(T)
    txn.commit_transaction(T)
    assert _committed(broker, "rb", "reborn", 2) == {0: -1001, 1: -1001}
    _create_topic(broker, "reborn", 2)
    _produce(broker, "reborn", {0: 5})
    c = Tracked(broker, "rb", "reborn", **{"auto.offset.reset": "earliest"})
    try:
        got: list[int] = []
        deadline = time.monotonic() + T
        while len(got) < 5 and time.monotonic() < deadline:
            msg = c.c.poll(0.2)
            if msg is not None and msg.error() is None:
                got.append(msg.offset())
        assert got == [0, 1, 2, 3, 4]  # nothing skipped by the old topic's offset 3
        c.c.commit(offsets=[TopicPartition("reborn", 0, 5)], asynchronous=False)
    finally:
        c.c.close()
    broker.restart()
    _create_topic(broker, "after-restart", 1)  # a metadata change the restarted broker acts on
    assert _committed(broker, "rb", "reborn", 2) == {0: 5, 1: -1001}
